"""mfrec-recommend and mfrec-eval on a checkpoint, and the safety of checkpoint loading."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mfrec.app import CONFIG_DIR
from mfrec.checkpoint import load_module
from mfrec.errors import ConfigError
from mfrec.recommend import top_k
from mfrec.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small biased MF trained on the named triples, with a test split."""
    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={run_dir}", "data=triples", "data.test_fraction=0.25", "model=biased_mf",
            "model.embedding_dim=4", "trainer.max_epochs=30", "print_config=false", "report.users=[]",
        ])
    metrics = train(cfg)
    (run_dir / "train_metrics.json").write_text(json.dumps(metrics))
    return run_dir / "checkpoints" / "last.ckpt"


def run(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", command, *args], capture_output=True, text=True, cwd=cwd)


def test_top_k_excludes_what_the_user_rated_in_training(checkpoint):
    module = load_module(checkpoint)
    alice = module.data_info["user_ids"].index("alice")
    seen = set(module.data_info["seen_movies"][module.data_info["seen_users"] == alice].tolist())
    movies, scores = top_k(module, torch.tensor([alice]), k=4)
    recommended = [m for m in movies[0].tolist() if m >= 0]
    assert recommended and not seen & set(recommended)
    assert len(recommended) == 4 - len(seen)
    assert scores[0, : len(recommended)].tolist() == sorted(scores[0, : len(recommended)].tolist(), reverse=True)
    everything, _ = top_k(module, torch.tensor([alice]), k=4, exclude_seen=False)
    assert sorted(everything[0].tolist()) == [0, 1, 2, 3]


def test_recommend_prints_a_table_with_raw_ids_and_titles(checkpoint, tmp_path):
    done = run("mfrec.recommend", f"ckpt_path={checkpoint}", "users=[alice,erin]", "k=2", "exclude_seen=false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Top 2 movies for user alice:"
    assert lines[1].split() == ["rank", "movie", "title", "predicted"]
    assert lines[2].split()[0] == "1" and lines[2].split()[1].startswith("Movie_")
    assert "Top 2 movies for user erin:" in lines


def test_recommend_writes_every_users_top_k_as_csv(checkpoint, tmp_path):
    done = run("mfrec.recommend", f"ckpt_path={checkpoint}", "k=3", "output=recs.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "recs.csv").open()))
    assert {row["user_id"] for row in rows} == {"alice", "bob", "carol", "dave", "erin"}
    assert set(rows[0]) == {"user_id", "rank", "movie_id", "title", "predicted_rating"}
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["users=[zoe]"], "user 'zoe' is not in the data (5 users, e.g. alice, bob"),
        (["users=[alice]", "k=0"], "config key 'k': got 0; valid: an integer >= 1"),
        ([], "give users=[id,...] to print, or output=recs.csv"),
    ],
)
def test_recommend_errors_are_one_clear_line(checkpoint, tmp_path, args, message):
    done = run("mfrec.recommend", f"ckpt_path={checkpoint}", *args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_missing_truncated_foreign_and_hostile_checkpoints_are_refused(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="is required"):
        load_module(None)
    with pytest.raises(ConfigError, match="is not a file"):
        load_module(tmp_path / "nothing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_module(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ConfigError, match="not an mfrec checkpoint"):
        load_module(foreign)

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    hostile = tmp_path / "hostile.ckpt"
    torch.save({"mfrec_data": {}, "hyper_parameters": {}, "payload": Exploit()}, hostile)
    with pytest.raises(ConfigError, match="refused for safety"):
        load_module(hostile)
    assert not marker.exists()

    legacy = tmp_path / "legacy.ckpt"  # a bare pickle, not even torch's zip format
    with legacy.open("wb") as file:
        pickle.dump(Exploit(), file)
    with pytest.raises(ConfigError):
        load_module(legacy)
    assert not marker.exists()


def test_eval_rebuilds_the_test_split_and_reproduces_the_training_runs_metrics(checkpoint, tmp_path):
    done = run("mfrec.evaluate", f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "test/rmse" in done.stdout and "test/mae" in done.stdout
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # the fixture's run has no validation split, so it tested its final weights: last.ckpt's
    trained = json.loads((checkpoint.parent.parent / "train_metrics.json").read_text())
    assert saved["metrics"]["test/rmse"] == pytest.approx(trained["test/rmse"], abs=1e-6)
    assert saved["metrics"]["test/mae"] == pytest.approx(trained["test/mae"], abs=1e-6)
