"""mfrec-train end to end: overrides, TensorBoard events, checkpoints, validation and test metrics, sweeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mfrec.errors import DivergenceError
from mfrec.module import MFModule
from mfrec.run_result import read_result
from mfrec.train import train

SHORT = ("trainer.max_epochs=20", "print_config=false")


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_overrides_reach_the_run_and_the_printed_config(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "model.embedding_dim=8", "optimizer.lr=0.05",
         "trainer.max_epochs=200", "seed=3", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, check=True,
    )
    printed = yaml.safe_load(done.stdout[: done.stdout.index("Recommended movies")])
    assert printed["model"]["embedding_dim"] == 8
    assert printed["optimizer"]["lr"] == 0.05
    assert printed["trainer"]["max_epochs"] == 200
    assert printed["seed"] == 3
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert saved["model"]["embedding_dim"] == 8
    hparams = MFModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").hparams
    assert (hparams.embedding_dim, hparams.optimizer["lr"]) == (8, 0.05)
    result = read_result(run_dir)
    assert result.status == "completed" and "train/loss" in result.metrics and "seed=3" in result.overrides


def test_train_loss_falls_in_the_tensorboard_events(make_config, tmp_path):
    train(make_config("trainer.max_epochs=200", "print_config=false"))
    losses = scalars(tmp_path, "train/loss")
    assert len(losses) == 200
    steps = [step for step, _ in losses]
    # Lightning's step axis counts training_step calls: one chunk, so one call, an epoch here
    assert steps == list(range(200))
    assert losses[-1][1] < losses[0][1] / 5


def test_checkpoint_loads_without_extra_arguments(make_config, tmp_path):
    train(make_config(*SHORT, "model=biased_mf", "optimizer=adam", "scheduler=step"))
    module = MFModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert module.model.use_biases and module.hparams.num_users == 5 and module.hparams.num_movies == 4
    assert module.hparams.optimizer["_target_"] == "torch.optim.Adam"


def test_validation_and_test_splits_log_rmse_mae_and_best(make_config, tmp_path):
    cfg = make_config(
        *SHORT, "data=triples", "data.val_fraction=0.2", "data.test_fraction=0.2", "model=biased_mf",
        "report.users=[alice]", "report.exclude_seen=true", "report.clip=true", "metrics.ks=[2,10]",
        "metrics.relevance_threshold=1",
    )
    metrics = train(cfg)
    for name in ("train/loss", "val/rmse", "val/mae", "val/rmse_best", "test/rmse", "test/mae"):
        assert name in metrics
    for name in ("precision", "recall", "ndcg", "hit_rate", "map", "coverage"):
        assert 0.0 <= metrics[f"test/{name}@2"] <= 1.0
        assert f"val/{name}@2" in metrics
    assert "test/ndcg@10" not in metrics  # longer than the 4-movie catalogue
    val_rmse = [value for _, value in scalars(tmp_path, "val/rmse")]
    best = [value for _, value in scalars(tmp_path, "val/rmse_best")]
    assert best[-1] == pytest.approx(min(val_rmse))
    assert (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_report_options_exclude_seen_top_k_and_clip(make_config, capsys):
    train(make_config(*SHORT, "report.users=[0]", "report.exclude_seen=true", "report.clip=true", "report.top_k=1"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("Recommended", "Movie_"))]
    assert lines[0] == "Recommended movies for user 0:"
    assert len(lines) == 2 and lines[1].startswith("Movie_C: Predicted rating")  # user 0 rated A, B and D
    assert 1.0 <= float(lines[1].rsplit(" ", 1)[1]) <= 5.0


def test_divergence_stops_with_the_epoch_and_a_smaller_learning_rate(make_config):
    with pytest.raises(DivergenceError, match=r"diverged in epoch \d+.*smaller learning rate.*optimizer.lr=10\b"):
        train(make_config(*SHORT, "optimizer.lr=100"))


def test_divergence_exits_non_zero_and_keeps_a_readable_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "optimizer.lr=100", "print_config=false", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True,
    )
    assert done.returncode != 0
    assert "mfrec-train: error: training diverged in epoch 0" in done.stderr
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert read_result(run_dir).error.startswith("DivergenceError: training diverged in epoch 0")


def test_multirun_sweep_gives_each_job_its_own_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    subprocess.run(
        [sys.executable, "-m", "mfrec.train", "-m", "model.embedding_dim=2,4", "optimizer.lr=0.01,0.02",
         "trainer.max_epochs=3", "print_config=false", f"hydra.sweep.dir={sweep_dir}"],
        capture_output=True, text=True, check=True,
    )
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir())
    assert jobs == ["0-embedding_dim=2,lr=0.01", "1-embedding_dim=2,lr=0.02", "2-embedding_dim=4,lr=0.01", "3-embedding_dim=4,lr=0.02"]
    for job in jobs:
        assert list((sweep_dir / job).glob("events.out.tfevents.*"))
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").exists()
