"""Nothing lost: a killed run resumes to the same weights as an uninterrupted one; SIGTERM stops cleanly."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

from mfrec.errors import ConfigError
from mfrec.train import train

# Shuffled mini-batches, so that resuming must also restore the data order.
SHUFFLED = [
    "data.shuffle=true", "data.batch_size=2", "trainer.max_epochs=300", "print_config=false", "seed=11",
    "callbacks.last_checkpoint.every_n_epochs=1",
]


def start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mfrec.train", *SHUFFLED, f"hydra.run.dir={run_dir}", *overrides],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not last.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    done = start(run_dir)
    assert done.wait(timeout=120) == 0, done.communicate()
    return run_dir


def logged_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    """The steps TensorBoard shows for ``tag`` across the run's event files (the resumed run adds one).

    A point written after the last checkpoint and replayed after a resume appears twice on disk;
    TensorBoard shows the replayed one (it drops the older points a restart goes back over).
    """
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def logged_values(run_dir: Path, tag: str) -> list[float]:
    values = []
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            values += [_scalar(value) for value in event.summary.value if value.tag == tag]
    return values


def _scalar(value) -> float:
    """A summary value written either as a plain float or as a tensor (newer TensorBoard)."""
    return float(tensor_util.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value


def assert_same_weights(run_dir: Path, clean_run: Path) -> None:
    resumed, clean = weights(run_dir), weights(clean_run)
    assert resumed.keys() == clean.keys()
    for name in clean:
        torch.testing.assert_close(resumed[name], clean[name], rtol=0, atol=1e-6)


def test_sigkill_at_an_arbitrary_moment_then_resume_ends_like_an_uninterrupted_run(tmp_path, clean_run):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_checkpoint(run_dir, process)
    time.sleep(random.uniform(0.0, 1.0))
    process.kill()  # SIGKILL: no chance to clean up
    assert process.wait() == -signal.SIGKILL  # killed mid-run, not after finishing

    resumed = subprocess.run(
        [sys.executable, "-m", "mfrec.train", f"resume={run_dir}", "print_config=false"],
        capture_output=True, text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Restored all states from the checkpoint" in resumed.stderr
    assert_same_weights(run_dir, clean_run)
    # One train/loss point per epoch (one training chunk an epoch here): none lost, none twice.
    assert logged_steps(run_dir) == list(range(300))


def test_sigterm_checkpoints_the_epoch_and_says_how_to_resume(tmp_path, clean_run):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_checkpoint(run_dir, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert f"Continue with: mfrec-train resume={run_dir}" in stderr
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert f"after {saved['global_step']} optimizer steps" in stderr
    assert saved["global_step"] < 300 * 7  # it stopped early (7 batches an epoch)

    resumed = subprocess.run(
        [sys.executable, "-m", "mfrec.train", f"resume={run_dir}", "print_config=false"],
        capture_output=True, text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(run_dir, clean_run)
    assert logged_steps(run_dir) == list(range(300))


def test_ctrl_c_stops_the_same_way(tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_checkpoint(run_dir, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert "Continue with: mfrec-train resume=" in stderr


def test_truncated_or_foreign_ckpt_path_is_a_clear_error(make_config, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        train(make_config(f"ckpt_path={truncated}"))
    with pytest.raises(ConfigError, match="has no checkpoints/last.ckpt"):
        train(make_config(f"resume={tmp_path}"))


def test_continuing_from_a_checkpoint_keeps_the_best_validation_rmse_and_its_own_config(make_config, tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    common = ("data=triples", "data.val_fraction=0.25", "model=biased_mf", "print_config=false", "report.users=[]")
    first = train(make_config(*common, "trainer.max_epochs=6", f"paths.output_dir={first_dir}"))
    second = train(make_config(
        *common, "trainer.max_epochs=12", f"paths.output_dir={second_dir}", f"ckpt_path={first_dir}/checkpoints/last.ckpt",
    ))
    every_val_rmse = [value for run in (first_dir, second_dir) for value in logged_values(run, "val/rmse")]
    assert len(every_val_rmse) == 12
    assert second["val/rmse_best"] == pytest.approx(min(every_val_rmse))  # over all 12 epochs
    assert second["val/rmse_best"] <= first["val/rmse_best"]
    saved = torch.load(second_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["mfrec_config"]["paths"]["output_dir"] == str(second_dir)
    assert saved["mfrec_config"]["trainer"]["max_epochs"] == 12


def test_a_config_error_from_inside_a_target_is_one_clear_line_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "data.split=kfold", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert "mfrec-train: error: config key 'data.split': unknown split 'kfold'" in done.stderr
    assert "Traceback" not in done.stderr and not run_dir.exists()


def test_resume_refuses_overrides_it_would_ignore(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", f"resume={tmp_path}", "trainer.max_epochs=5"],
        capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert "trainer.max_epochs=5 would be ignored" in done.stderr and "ckpt_path=" in done.stderr
    assert tmp_path.exists() and not (tmp_path / "result.json").exists()  # the directory it was pointed at is left alone
