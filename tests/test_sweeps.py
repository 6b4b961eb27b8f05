"""Sweeps end to end: job runs named after their overrides, TensorBoard's HParams, Projector and
run list (through its own readers and its HTTP server), the sweep summary, the launchers."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from mfrec.run_result import read_result

GRID = ("model.embedding_dim=2,4", "optimizer.lr=0.01,0.05")
# Held-out ratings for val/test metrics; ks=[2] so that test/ndcg@2 exists on the 4-movie toy data.
SHARED = (
    "trainer.max_epochs=3", "data.val_fraction=0.2", "data.test_fraction=0.2", "metrics.ks=[2]",
    "metrics.relevance_threshold=1", "print_config=false",
)
JOBS = ["0-embedding_dim=2,lr=0.01", "1-embedding_dim=2,lr=0.05", "2-embedding_dim=4,lr=0.01", "3-embedding_dim=4,lr=0.05"]


def mfrec_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfrec.train", *args], capture_output=True, text=True)


def job_dirs(sweep_dir: Path) -> list[str]:
    return sorted(path.name for path in sweep_dir.iterdir() if path.is_dir() and not path.name.startswith("."))


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2x2 grid on the toy data, its jobs run two at a time by the joblib launcher."""
    sweep_dir = tmp_path_factory.mktemp("grid") / "sweep"
    done = mfrec_train("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *GRID, *SHARED, f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr
    return sweep_dir, done


@pytest.mark.slow
def test_each_job_of_a_parallel_grid_is_a_run_named_after_its_swept_values(grid_sweep):
    sweep_dir, _ = grid_sweep
    assert job_dirs(sweep_dir) == JOBS  # the shared overrides (max_epochs, ...) are left out of the names
    for job in JOBS:
        result = read_result(sweep_dir / job)
        assert result.status == "completed" and result.error is None
        assert {"model.embedding_dim", "optimizer.lr", "trainer.max_epochs"} <= {o.split("=")[0] for o in result.overrides}
        assert {"train/loss", "val/rmse"} <= set(events(sweep_dir / job).Tags()["scalars"])
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_every_run_logs_its_hparams_with_its_final_metrics(grid_sweep):
    sweep_dir, _ = grid_sweep
    for job in JOBS:
        run = events(sweep_dir / job)
        plugin_data = run.PluginTagToContent("hparams")
        start = hparams_metadata.parse_session_start_info_plugin_data(plugin_data[hparams_metadata.SESSION_START_INFO_TAG])
        hparams = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
        embedding_dim, lr = (part.split("=")[1] for part in job.split("-", 1)[1].split(","))
        assert hparams["model.embedding_dim"] == int(embedding_dim) and hparams["optimizer.lr"] == float(lr)
        assert hparams["optimizer"] == "SGD" and hparams["scheduler"] == "none" and hparams["data.source"] == "DenseMatrix"
        assert hparams["trainer.max_epochs"] == 3 and hparams["data.val_fraction"] == 0.2 and hparams["seed"] == 42
        assert hparams["model.use_biases"] is False

        experiment = hparams_metadata.parse_experiment_plugin_data(plugin_data[hparams_metadata.EXPERIMENT_TAG])
        assert [info.name.tag for info in experiment.metric_infos] == ["val/rmse_best", "test/rmse", "test/ndcg@2"]
        differing = {info.name for info in experiment.hparam_infos if info.differs}
        assert differing == {"model.embedding_dim", "optimizer.lr"}  # the columns TensorBoard shows first
        # The HParams tab shows each metric's last logged value: the run's final one.
        final = read_result(sweep_dir / job).metrics
        for tag in ("val/rmse_best", "test/rmse", "test/ndcg@2"):
            assert run.Scalars(tag)[-1].value == pytest.approx(final[tag])
        assert "hp_metric" not in run.Tags()["scalars"]


@pytest.mark.slow
def test_projector_shows_the_movie_embeddings_labelled_with_titles(grid_sweep):
    sweep_dir, _ = grid_sweep
    for job in JOBS:
        config = (sweep_dir / job / "projector_config.pbtxt").read_text()
        [tensor_path] = [line.split('"')[1] for line in config.splitlines() if "tensor_path" in line]
        [metadata_path] = [line.split('"')[1] for line in config.splitlines() if "metadata_path" in line]
        header, *rows = [line.split("\t") for line in (sweep_dir / job / metadata_path).read_text().splitlines()]
        assert header == ["title", "movie_id", "ratings"]
        assert [row[0] for row in rows] == ["Movie_A", "Movie_B", "Movie_C", "Movie_D"]
        vectors = [line.split("\t") for line in (sweep_dir / job / tensor_path).read_text().splitlines()]
        embedding_dim = int(job.split("embedding_dim=")[1].split(",")[0])
        assert len(vectors) == 4 and {len(vector) for vector in vectors} == {embedding_dim}


@pytest.mark.slow
def test_the_sweep_ends_with_its_summary_table_csv_and_plot(grid_sweep):
    sweep_dir, done = grid_sweep
    assert f"Sweep {sweep_dir}: 4 jobs (4 completed), ranked by val/rmse_best (min)" in done.stdout
    table = done.stdout[done.stdout.index(f"Sweep {sweep_dir}"):]
    assert all(job in table for job in JOBS)
    with (sweep_dir / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    best = [float(row["val/rmse_best"]) for row in rows]
    assert best == sorted(best) and [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    for row in rows:
        assert float(row["val/rmse_best"]) == pytest.approx(read_result(sweep_dir / row["job"]).metrics["val/rmse_best"])
        assert row["job"].endswith(f"embedding_dim={row['model.embedding_dim']},lr={row['optimizer.lr']}")
    assert (sweep_dir / "summary.png").read_bytes().startswith(b"\x89PNG")


def _get(url: str, body: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.mark.slow
def test_the_tensorboard_server_shows_the_sweep(grid_sweep):
    sweep_dir, _ = grid_sweep
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(sweep_dir), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}/data"
    try:
        runs, deadline = [], time.monotonic() + 60
        while sorted(runs) != JOBS:  # the runs appear once TensorBoard has read the directory
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, f"TensorBoard listed {runs} after 60 s"
            time.sleep(0.5)
            try:
                runs = _get(f"{base}/runs")
            except OSError:
                runs = []
        tags = _get(f"{base}/plugin/scalars/tags")
        assert all({"train/loss", "val/rmse", "val/rmse_best"} <= set(tags[job]) for job in JOBS)
        groups = _get(f"{base}/plugin/hparams/session_groups",
                      {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS"], "startIndex": 0, "sliceSize": 10})
        assert sorted(group["name"] for group in groups["sessionGroups"]) == JOBS
        for group in groups["sessionGroups"]:
            assert {value["name"]["tag"] for value in group["metricValues"]} == {"val/rmse_best", "test/rmse", "test/ndcg@2"}
        assert sorted(_get(f"{base}/plugin/projector/runs")) == JOBS
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_a_failed_job_is_reported_the_others_run_and_the_sweep_exits_non_zero(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = mfrec_train("-m", "optimizer.lr=100,0.01", "trainer.max_epochs=2", "print_config=false", f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 1
    assert "error in sweep job 0-lr=100: training diverged in epoch" in done.stderr
    assert "mfrec-train: error: 1 of 2 sweep jobs failed: 0-lr=100" in done.stderr
    assert "Traceback" not in done.stderr
    failed, completed = read_result(sweep_dir / "0-lr=100"), read_result(sweep_dir / "1-lr=0.01")
    assert failed.status == "failed" and failed.error.startswith("DivergenceError: training diverged")
    assert completed.status == "completed" and "train/loss" in completed.metrics
    summary = done.stdout[done.stdout.index(f"Sweep {sweep_dir}"):]
    assert "1 completed, 1 failed" in summary and "DivergenceError" in summary


@pytest.mark.slow
def test_sigterm_stops_the_whole_sweep_and_the_job_can_be_resumed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mfrec.train", "-m", "seed=1,2", "trainer.max_epochs=100000", "print_config=false",
         f"hydra.sweep.dir={sweep_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first_checkpoint = sweep_dir / "0-seed=1" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not first_checkpoint.exists():
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
        time.sleep(0.05)
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signal.SIGTERM, stderr
    assert "Continue with: mfrec-train" in stderr
    assert read_result(sweep_dir / "0-seed=1").status == "interrupted"
    assert not (sweep_dir / "1-seed=2").exists()  # the sweep stopped: the next job never started


@pytest.mark.slow
def test_submitit_local_runs_a_job_into_the_sweep_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = mfrec_train("-m", "hydra/launcher=submitit_local", "model.embedding_dim=3", "trainer.max_epochs=2",
                       "print_config=false", f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr
    assert job_dirs(sweep_dir) == ["0"]  # nothing varies: the job number alone
    assert (sweep_dir / ".submitit").is_dir()
    assert read_result(sweep_dir / "0").status == "completed"
    assert list((sweep_dir / "0").glob("events.out.tfevents.*")) and (sweep_dir / "0" / "checkpoints" / "last.ckpt").exists()
    assert f"Sweep {sweep_dir}: 1 job (1 completed)" in done.stdout
