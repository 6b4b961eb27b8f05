"""The parts of a sweep that need no sweep: job names, result.json, the summary of a sweep directory,
and the dashboard options of a single run."""

from __future__ import annotations

import csv
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mfrec.errors import ConfigError, DivergenceError
from mfrec.run_result import RunResult, read_result, recording_result, write_result
from mfrec.sweeps.naming import MAX_NAME_LENGTH, job_dirname
from mfrec.sweeps.summary import main as sweep_summary
from mfrec.train import train


def test_job_names_show_the_overrides_with_short_keys():
    assert job_dirname(3, ["model.embedding_dim=16", "optimizer.lr=0.01"]) == "3-embedding_dim=16,lr=0.01"
    assert job_dirname(0, ["seed=1", "data.seed=2"]) == "0-seed=1,data.seed=2"  # short keys would clash
    assert job_dirname(1, ["optimizer=adam", "+model.l2=[0.1]", "~experiment"]) == "1-optimizer=adam,l2=_0.1_,~experiment"
    assert job_dirname(2, ["data.source.path=/data/my ratings.csv"]) == "2-path=_data_my_ratings.csv"
    assert job_dirname(4, ["model.embedding_dim=8", "trainer.max_epochs=5"], exclude_keys=["trainer.max_epochs"]) == "4-embedding_dim=8"
    assert job_dirname(5, []) == "5"
    assert len(job_dirname(6, [f"model.key{i}={'9' * 40}" for i in range(10)])) == len("6-") + MAX_NAME_LENGTH


def test_result_json_records_how_a_run_ended(tmp_path):
    assert recording_result(tmp_path, ["seed=1"], lambda: {"val/rmse_best": 0.9}) == {"val/rmse_best": 0.9}
    assert read_result(tmp_path) == RunResult("completed", {"val/rmse_best": 0.9}, None, ["seed=1"])

    def diverge():
        raise DivergenceError("training diverged in epoch 3")

    with pytest.raises(DivergenceError):
        recording_result(tmp_path, ["seed=1"], diverge)
    assert read_result(tmp_path) == RunResult("failed", {}, "DivergenceError: training diverged in epoch 3", ["seed=1"])

    class TrialPruned(Exception):  # optuna's, recognised by its name
        pass

    def prune():
        raise TrialPruned("trial was pruned at epoch 2")

    with pytest.raises(TrialPruned):
        recording_result(tmp_path, [], prune)
    assert read_result(tmp_path).status == "pruned"

    def bad_config():
        raise ConfigError("optimizer.lr", "got 0")

    with pytest.raises(ConfigError):
        recording_result(tmp_path, [], bad_config, record_startup_errors=False)
    assert read_result(tmp_path).status == "pruned"  # left as it was: nothing ran
    assert [path.name for path in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def make_job(sweep_dir, name, overrides, result=None):
    job_dir = sweep_dir / name
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if result is not None:
        write_result(job_dir, result)


@pytest.fixture
def sweep_dir(tmp_path):
    """Five jobs as a sweep leaves them: two completed, one failed, one pruned, one killed without result."""
    shared = "model.embedding_dim=8"
    make_job(tmp_path, "0-lr=0.1", ["optimizer.lr=0.1", shared], RunResult("completed", {"val/rmse_best": 0.95, "test/ndcg@10": 0.5}))
    make_job(tmp_path, "1-lr=0.01", ["optimizer.lr=0.01", shared], RunResult("completed", {"val/rmse_best": 0.91, "test/ndcg@10": 0.3}))
    make_job(tmp_path, "2-lr=100", ["optimizer.lr=100", shared], RunResult("failed", error="DivergenceError: training diverged in epoch 0"))
    make_job(tmp_path, "3-lr=0.5", ["optimizer.lr=0.5", shared], RunResult("pruned", error="TrialPruned: at epoch 2"))
    make_job(tmp_path, "10-lr=0.001", ["optimizer.lr=0.001", shared])
    return tmp_path


def table_order(text: str, names: list[str]) -> list[str]:
    return sorted(names, key=text.index)


def test_the_summary_ranks_completed_jobs_and_lists_the_others_with_their_status(sweep_dir, capsys):
    assert sweep_summary([str(sweep_dir)]) == 1  # a job failed
    out = capsys.readouterr().out
    assert f"Sweep {sweep_dir}: 5 jobs (2 completed, 1 pruned, 1 failed, 1 no result), ranked by val/rmse_best (min)" in out
    header, *rows = out.splitlines()[1:7]
    assert header.split() == ["rank", "val/rmse_best", "status", "optimizer.lr", "job", "error"]  # only what varies
    assert [row.split()[:3] for row in rows] == [
        ["1", "0.9100", "completed"], ["2", "0.9500", "completed"], ["-", "-", "pruned"], ["-", "-", "failed"], ["-", "-", "no"],
    ]
    assert "DivergenceError: training diverged in epoch 0" in rows[3] and "killed" in rows[4]

    with (sweep_dir / "summary.csv").open() as file:
        written = list(csv.DictReader(file))
    assert [row["job"] for row in written] == ["1-lr=0.01", "0-lr=0.1", "3-lr=0.5", "2-lr=100", "10-lr=0.001"]
    assert [row["status"] for row in written] == ["completed", "completed", "pruned", "failed", "no result"]
    assert written[0]["optimizer.lr"] == "0.01" and written[0]["test/ndcg@10"] == "0.3"
    assert written[3]["error"] == "DivergenceError: training diverged in epoch 0"
    assert (sweep_dir / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_the_summary_ranks_by_the_sweeps_optimized_metric_in_its_direction(sweep_dir, capsys):
    (sweep_dir / "multirun.yaml").write_text("optimized_metric: test/ndcg@10\nhydra: {}\n")
    sweep_summary([str(sweep_dir)])
    out = capsys.readouterr().out
    assert "ranked by test/ndcg@10 (max)" in out  # ranking metrics: higher is better
    assert table_order(out, ["0-lr=0.1", "1-lr=0.01"]) == ["0-lr=0.1", "1-lr=0.01"]
    sweep_summary([str(sweep_dir), "--metric", "val/rmse_best", "--direction", "max"])
    out = capsys.readouterr().out
    assert "ranked by val/rmse_best (max)" in out and table_order(out, ["0-lr=0.1", "1-lr=0.01"]) == ["0-lr=0.1", "1-lr=0.01"]


def test_a_metric_no_job_reported_is_an_error_naming_those_reported(sweep_dir, capsys):
    assert sweep_summary([str(sweep_dir), "--metric", "val/rsme"]) == 2
    assert "no job reported the metric 'val/rsme'; the jobs reported: test/ndcg@10, val/rmse_best" in capsys.readouterr().err
    assert sweep_summary([str(sweep_dir / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_without_matplotlib_the_plot_is_skipped_with_a_note(sweep_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # what `import` sees when it is not installed
    sweep_summary([str(sweep_dir)])
    assert 'No plot: matplotlib is not installed (pip install -e ".[sweep]")' in capsys.readouterr().out
    assert (sweep_dir / "summary.csv").exists() and not (sweep_dir / "summary.png").exists()


def test_projector_options_users_and_the_most_rated_items_only(make_config, tmp_path):
    train(make_config(
        "trainer.max_epochs=5", "print_config=false", "dashboard.hparams=false",
        "dashboard.projector.users=true", "dashboard.projector.max_items=3",
    ))
    config = (tmp_path / "projector_config.pbtxt").read_text()
    tsv = {line.split('"')[1].split("/")[1]: tmp_path / line.split('"')[1] for line in config.splitlines() if "metadata_path" in line}
    movies = [line.split("\t") for line in tsv["movie_embedding"].read_text().splitlines()]
    users = [line.split("\t") for line in tsv["user_embedding"].read_text().splitlines()]
    # The toy matrix's most-rated movies: Movie_D (5 ratings), Movie_A (4), Movie_B (3); not Movie_C (1).
    assert movies == [["title", "movie_id", "ratings"], ["Movie_A", "0", "4"], ["Movie_B", "1", "3"], ["Movie_D", "3", "5"]]
    assert [row[0] for row in users[1:]] == ["0", "2", "4"]  # 3 ratings each; users 1 and 3 have 2
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    with pytest.raises(KeyError):  # dashboard.hparams=false
        events.PluginTagToContent("hparams")
