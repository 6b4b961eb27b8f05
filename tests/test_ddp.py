"""DDP: each process trains its own shard of every epoch, and two CPU processes train like one.

The end-to-end tests run ``mfrec-train trainer=ddp trainer.devices=2`` (Lightning re-runs the
command line for rank 1; gloo on CPU) with ``RecordTraining`` below as an extra callback, found
through PYTHONPATH, which saves what each process trained on and ended with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mfrec.app import CONFIG_DIR
from mfrec.data.loader import TripleLoader, shard
from mfrec.config import validate_config
from mfrec.errors import ConfigError
from mfrec.train import train

TESTS = Path(__file__).resolve().parent
# 1000 seeded low-rank ratings: 800 to train (an even number: two shards drop nothing), 100 to
# validate, 100 to test; biased MF learns them in a few epochs of shuffled mini-batches.
FIXTURE = [
    "~experiment", "data=synthetic", "data.source.num_users=50", "data.source.num_items=30",
    "data.source.num_ratings=1000", "data.source.rank=2", "data.source.noise=0.3", "data.batches_per_chunk=4",
    "model=biased_mf", "model.embedding_dim=2", "optimizer=adam", "optimizer.lr=0.02", "trainer.max_epochs=10",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "print_config=false", "seed=5",
]
DDP = ["trainer=ddp", "trainer.devices=2"]
PER_PROCESS_BATCH = 16


class RecordTraining(pl.Callback):
    """Saves ``<dirpath>/rank<r>.pt``: the (user, movie) pairs this process trained on in each epoch,
    its optimizer steps, final metrics and weights."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.pairs: dict[int, list[torch.Tensor]] = {}
        self.metrics: dict[str, float] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, chunk, chunk_index: int) -> None:
        num_movies = pl_module.hparams.num_movies
        self.pairs.setdefault(trainer.current_epoch, []).extend(users * num_movies + movies for users, movies, _ in chunk)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics.update((name, float(value)) for name, value in trainer.callback_metrics.items())
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "world_size": trainer.world_size,
                "pairs": {epoch: torch.cat(parts) for epoch, parts in self.pairs.items()},
                "global_step": trainer.global_step,
                "metrics": self.metrics,
                "weights": pl_module.state_dict(),
            },
            self.dirpath / f"rank{trainer.global_rank}.pt",
        )


def run_mfrec_train(run_dir: Path, *overrides: str, timeout: float = 150, on_start=None) -> tuple[int, str, str]:
    """Run mfrec-train in its own process group; whatever happens, no process of it outlives the call."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "mfrec.train", *overrides, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        if on_start is not None:
            on_start(process)
        stdout, stderr = process.communicate(timeout=timeout)
        return process.returncode, stdout, stderr
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # rank 1 too, should the run have failed or hung
        except ProcessLookupError:
            pass


def compose_config(output_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def users_visited(loader: TripleLoader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return [user for chunk in loader for users, _, _ in chunk for user in users.tolist()]


def test_shards_are_disjoint_equally_long_and_cover_all_but_the_remainder():
    order = torch.randperm(11)
    shards = [shard(order, rank, 3) for rank in range(3)]
    assert [len(part) for part in shards] == [3, 3, 3]
    together = torch.cat(shards).tolist()
    assert len(set(together)) == 9  # disjoint
    assert set(together) == set(order[:9].tolist())  # the last 11 % 3 are dropped
    assert torch.equal(shard(order, 0, 1), order)


def test_each_process_visits_its_shard_of_a_new_order_every_epoch():
    users = torch.arange(103)  # a rating's user is its index
    loaders = [
        TripleLoader(users, users, users.float(), batch_size=4, shuffle=True, seed=7, batches_per_chunk=3, rank=rank, world_size=2)
        for rank in range(2)
    ]
    assert len(loaders[0]) == len(loaders[1]) == 5  # 51 ratings each: 13 batches in chunks of 3
    epochs = []
    for epoch in (0, 1):
        seen = [users_visited(loader, epoch) for loader in loaders]
        assert len(seen[0]) == len(seen[1]) == 51
        assert not set(seen[0]) & set(seen[1])
        epochs.append(seen)
    assert epochs[0][0] != epochs[1][0]  # a new order, and a new shard, every epoch
    # Together, the processes' i-th batches are the i-th batch of one process with twice the batch
    # size (all but the last, where the single process also takes the rating the shards drop).
    single = TripleLoader(users, users, users.float(), batch_size=8, shuffle=True, seed=7)
    for loader in loaders:
        loader.sampler.set_epoch(0)
    single_batches = [set(batch_users.tolist()) for chunk in single for batch_users, _, _ in chunk]
    rank_batches = [[set(batch_users.tolist()) for chunk in loader for batch_users, _, _ in chunk] for loader in loaders]
    assert [a | b for a, b in zip(*rank_batches)][:12] == single_batches[:12]


def test_natural_order_is_sharded_too():
    users = torch.arange(6)
    loaders = [TripleLoader(users, users, users.float(), batch_size=2, rank=rank, world_size=2) for rank in range(2)]
    assert [users_visited(loader, 0) for loader in loaders] == [[0, 2, 4], [1, 3, 5]]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.devices=2"], "trainer.devices"),
        (["+trainer.num_nodes=2"], "trainer.num_nodes"),
        (["trainer=ddp", "trainer.devices=0"], "trainer.devices"),
        (["trainer=ddp", "trainer.num_nodes=0"], "trainer.num_nodes"),
        (["trainer=ddp", "trainer.devices=2", "model.sparse=true"], "model.sparse"),  # DDP averages dense gradients
    ],
)
def test_several_devices_need_trainer_ddp(make_config, overrides, key):
    with pytest.raises(ConfigError, match=key):
        train(make_config(*overrides))


def test_the_documented_ddp_command_is_accepted_with_the_fused_step(make_config):
    # experiment=ml100k steps with model.fused_sgd; under DDP its processes take the autograd step
    validate_config(make_config("experiment=ml100k", *DDP))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Iterator[tuple[Path, str, dict[int, dict]]]:
    """A 2-process run of the fixture: its run directory, stdout and what each rank recorded."""
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    record = run_dir / "record"
    returncode, stdout, stderr = run_mfrec_train(
        run_dir, *FIXTURE, *DDP, f"data.batch_size={PER_PROCESS_BATCH}",
        f"+callbacks.record._target_={__name__}.RecordTraining", f"+callbacks.record.dirpath={record}",
    )
    assert returncode == 0, stderr
    yield run_dir, stdout, {rank: torch.load(record / f"rank{rank}.pt", weights_only=True) for rank in range(2)}


@pytest.mark.slow
def test_ranks_train_disjoint_shards_covering_each_epoch(ddp_run, tmp_path):
    _, _, ranks = ddp_run
    datamodule = instantiate(compose_config(tmp_path, *FIXTURE).data)
    datamodule.setup("fit")
    train_part = datamodule.train_ratings
    training_pairs = set((train_part.users * datamodule.num_movies + train_part.movies).tolist())
    assert len(training_pairs) == len(train_part) == 800
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    for epoch in range(10):
        seen = [ranks[rank]["pairs"][epoch].tolist() for rank in range(2)]
        assert len(seen[0]) == len(seen[1]) == 400  # each rating once, half each
        assert not set(seen[0]) & set(seen[1])
        assert set(seen[0]) | set(seen[1]) == training_pairs
    assert ranks[0]["pairs"][0].tolist() != ranks[0]["pairs"][1].tolist()  # shuffled every epoch
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 10 * 400 // PER_PROCESS_BATCH


@pytest.mark.slow
def test_ranks_end_with_the_same_weights_and_metrics(ddp_run):
    _, _, ranks = ddp_run
    for name, weight in ranks[0]["weights"].items():
        assert torch.equal(weight, ranks[1]["weights"][name]), name
    for name in ("train/loss", "val/rmse", "val/rmse_best", "test/rmse", "test/ndcg@10"):
        assert ranks[0]["metrics"][name] == ranks[1]["metrics"][name], name


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_both_batches(ddp_run, tmp_path):
    _, _, ranks = ddp_run
    ddp = ranks[0]["metrics"]
    # One process taking both processes' batches at once: the same steps, up to rounding.
    both = train(compose_config(tmp_path / "both", *FIXTURE, f"data.batch_size={2 * PER_PROCESS_BATCH}"))
    for name in ("train/loss", "val/rmse_best", "test/rmse"):
        assert ddp[name] == pytest.approx(both[name], rel=1e-4), name
    # One process with the same config (half the batch): as good; and far better than no training.
    same = train(compose_config(tmp_path / "same", *FIXTURE, f"data.batch_size={PER_PROCESS_BATCH}"))
    untrained = train(compose_config(tmp_path / "untrained", *FIXTURE, "train=false"))
    assert ddp["test/rmse"] == pytest.approx(same["test/rmse"], rel=0.15)
    assert ddp["test/rmse"] < 0.6 * untrained["test/rmse"]


@pytest.mark.slow
def test_rank_zero_alone_logs_checkpoints_and_reports(ddp_run):
    run_dir, stdout, ranks = ddp_run
    assert stdout.count("Test metrics (best weights):") == 1 and stdout.count("Run directory:") == 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == ranks[0]["global_step"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert len(events.Scalars("val/rmse")) == 10
    assert events.Scalars("test/rmse")[-1].value == pytest.approx(ranks[0]["metrics"]["test/rmse"])


@pytest.mark.slow
def test_sigterm_to_rank_zero_stops_both_processes_after_the_epoch(tmp_path):
    run_dir = tmp_path / "run"

    def terminate_rank_zero_after_an_epoch(process: subprocess.Popen) -> None:
        last = run_dir / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not last.exists():
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # rank 0 only: rank 1 must learn of it and stop too

    returncode, _, stderr = run_mfrec_train(
        run_dir, *FIXTURE, *DDP, "trainer.max_epochs=1000", on_start=terminate_rank_zero_after_an_epoch,
    )
    assert returncode == 128 + signal.SIGTERM, stderr
    assert f"Continue with: mfrec-train resume={run_dir}" in stderr
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # stopped at an epoch's end long before max_epochs; a signal that lands just after the first
    # epoch's checkpoint stops there (epoch index 0)
    assert 0 <= saved["epoch"] < 999


def test_a_multirun_cannot_start_ddp_processes_by_rerunning_itself(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}", *FIXTURE, *DDP, "hydra.mode=MULTIRUN"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as Hydra does for each job of a sweep
    try:
        with open_dict(cfg):
            del cfg["hydra"]
        with pytest.raises(ConfigError, match="trainer.devices.*multirun"):
            train(cfg)
    finally:
        HydraConfig.instance().cfg = None
