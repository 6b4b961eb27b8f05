"""One training epoch at MovieLens-25M's shape: wall time, peak RSS and throughput, and ranking evaluation.

mfrec-train's path (``mfrec.train.train``) on ``data=synthetic`` with 162,541 users, 59,047 movies
and 25,000,095 ratings (random split: 10% validation, 10% test), biased MF at embedding_dim 64
trained by fused SGD (compiled, sum loss, batch 4096), one epoch, no logger and no checkpoints. The
validation at the end of the epoch is the ranking evaluation: RMSE and top-10 metrics with full
ranking over all movies for a sample of ``metrics.max_users`` users (10,000), ``metrics.chunk_size``
users at a time (``mfrec.metrics.ranking_metrics``, the code ``scripts/benchmark_ranking.py`` times).

Timed separately: the data (generation, split, model set-up), the training epoch (with the
``torch.compile`` warm-up in its first chunk, also estimated on its own), the validation. Peak RSS
is the whole process's (``getrusage``), taken after each phase.

    python scripts/benchmark_scale.py                   # ML-25M's shape
    python scripts/benchmark_scale.py --scale 0.1       # a tenth of the users, movies and ratings
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir

from mfrec.app import CONFIG_DIR, quiet_library_noise
from mfrec.train import train

USERS, MOVIES, RATINGS = 162_541, 59_047, 25_000_095  # MovieLens 25M
EPOCH_TARGET_SECONDS, RSS_TARGET_GB, RANKING_TARGET_SECONDS = 15.0, 4.0, 30.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss: kB on Linux


class PhaseClock(pl.Callback):
    """Wall time and peak RSS of the set-up, the training epoch (per chunk) and the validation."""

    def __init__(self, started: float):
        self.times = {"set-up": 0.0, "training": 0.0, "validation": 0.0}
        self.peaks = dict.fromkeys(self.times, 0.0)
        self.chunk_seconds: list[float] = []
        self.started = started
        self.train_ratings = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("set-up", self.started)
        self.train_ratings = len(trainer.datamodule.train_ratings)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._chunk_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        now = time.perf_counter()
        self.chunk_seconds.append(now - self._chunk_start)
        self._chunk_start = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("training", self._epoch_start)  # Lightning validates after the epoch's last batch
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end("validation", self._validation_start)

    def _end(self, phase: str, start: float) -> None:
        self.times[phase] = time.perf_counter() - start
        self.peaks[phase] = peak_rss_gb()

    def compile_seconds(self) -> float:
        """The first chunk's excess over a typical chunk: mostly torch.compile's warm-up."""
        if len(self.chunk_seconds) < 3:
            return 0.0
        return max(0.0, self.chunk_seconds[0] - statistics.median(self.chunk_seconds[1:-1]))


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink users, movies and ratings by this factor")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-users", type=int, default=10_000, help="users sampled for ranking metrics")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. model.compile=false")
    args = parser.parse_args()
    quiet_library_noise()
    for name in ("pytorch_lightning", "lightning.pytorch", "mfrec"):
        logging.getLogger(name).setLevel(logging.ERROR)

    users, movies, ratings = (max(1, int(n * args.scale)) for n in (USERS, MOVIES, RATINGS))
    overrides = [
        "~experiment", "data=synthetic", f"data.source.num_users={users}", f"data.source.num_items={movies}",
        f"data.source.num_ratings={ratings}", "data.batch_size=4096", "model=biased_mf", "model.embedding_dim=64",
        "model.fused_sgd=true", "model.compile=true", "model.loss_reduction=sum", "optimizer=sgd", "optimizer.lr=0.01",
        f"metrics.max_users={args.max_users}", "trainer.max_epochs=1", f"threads={args.threads}",
        "trainer.accelerator=cpu", "logger=none", "callbacks=none", "test=false", "report.users=[]",
        *args.overrides,
    ]  # fmt: skip
    print("mfrec-train " + " ".join(overrides))
    started = time.perf_counter()
    clock = PhaseClock(started)
    with tempfile.TemporaryDirectory() as output_dir:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[*overrides, "print_config=false", "trainer.enable_progress_bar=false",
                                              f"paths.output_dir={output_dir}"])  # fmt: skip
        metrics = train(cfg, callbacks=[clock])
    total = time.perf_counter() - started

    training, compiling = clock.times["training"], clock.compile_seconds()
    print(f"\n{users:,} users x {movies:,} movies, {ratings:,} ratings ({clock.train_ratings:,} in training), "
          f"dim 64, {args.threads} torch thread(s)")  # fmt: skip
    print(f"{'phase':54}{'wall time':>11}{'peak RSS':>11}")
    rows = [
        ("data: generate, split; model set-up", clock.times["set-up"], clock.peaks["set-up"]),
        ("training epoch", training, clock.peaks["training"]),
        ("  of which torch.compile warm-up (estimated)", compiling, None),
        (f"validation: RMSE, ranking on {args.max_users:,} users", clock.times["validation"], clock.peaks["validation"]),
        ("whole run", total, peak_rss_gb()),
    ]
    for label, seconds, peak in rows:
        print(f"{label:54}{seconds:>9.1f} s" + (f"{peak:>9.2f} GB" if peak is not None else ""))
    print(f"throughput: {clock.train_ratings / training / 1e6:.2f} M ratings/s "
          f"({clock.train_ratings / (training - compiling) / 1e6:.2f} M/s without the compile warm-up); "
          f"val/rmse {metrics.get('val/rmse', float('nan')):.4f}, val/ndcg@10 {metrics.get('val/ndcg@10', float('nan')):.4f}")  # fmt: skip
    if args.scale == 1.0:
        print("\nTargets:")
        print(f"  epoch < {EPOCH_TARGET_SECONDS:.0f} s: {training:.1f} s, {verdict(training < EPOCH_TARGET_SECONDS)}")
        print(f"  peak RSS < {RSS_TARGET_GB:.0f} GB: {peak_rss_gb():.2f} GB, {verdict(peak_rss_gb() < RSS_TARGET_GB)}")
        print(f"  ranking evaluation < {RANKING_TARGET_SECONDS:.0f} s: {clock.times['validation']:.1f} s, "
              f"{verdict(clock.times['validation'] < RANKING_TARGET_SECONDS)}")  # fmt: skip


if __name__ == "__main__":
    main()
