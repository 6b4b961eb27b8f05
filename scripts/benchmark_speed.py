"""Training speed on a MovieLens 100K fold: mfrec vs Surprise's SVD vs the tutorial's plain PyTorch loop.

All three train 100-factor models on the same fold's training file (u1.base by default) and are
scored on its test file, with the same number of torch threads (1 by default: Surprise's SGD is
single-threaded Cython, and on a machine shared with other jobs one thread is also mfrec's fastest).

- Surprise: ``SVD(n_factors=100, n_epochs=20)``, its defaults otherwise. Its test RMSE is the target
  the others must reach, its fit time the time they are compared with.
- mfrec: ``experiment=ml100k_fast`` through ``mfrec.train.train`` as ``mfrec-train`` runs it
  (Lightning loop, data module, chunked batches), without logger and checkpoints
  (``logger=none callbacks=none``), in several variants of the same update (fused SGD compiled or
  eager, autograd with dense embedding gradients compiled or eager, with sparse ones eager): the
  same arithmetic, so the same RMSE curve, at different speeds. A callback reads the clock from the
  start of training; after each epoch it evaluates test RMSE off the clock (evaluation time is not
  counted). Each variant first trains one epoch unmeasured, so that process start-up, imports and
  ``torch.compile`` (reported separately) are not counted.
- the tutorial's loop (``nn.Embedding`` N(0, 1), MSE, SGD lr 0.01, one step per rating, built
  from ``torch.tensor([i])``) at 100 factors, over the fold's ratings in file order, stopped after
  ``--seed-seconds`` of training.

Throughput is ratings trained per second of training. Time to RMSE is the training time until the
test RMSE is at most Surprise's (predictions clipped to 1-5 for everyone, as Surprise does).
Repeated runs alternate between the contenders; medians are printed.

    python scripts/benchmark_speed.py                      # fold u1, data from $MFREC_DATA_DIR
    python scripts/benchmark_speed.py --fold u3 --repeats 5
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from mfrec.app import CONFIG_DIR, quiet_library_noise
from mfrec.data.ratings import Ratings
from mfrec.train import train

FACTORS = 100
SURPRISE_EPOCHS = 20
# mfrec variants: overrides of experiment=ml100k_fast. All take the same SGD step on the same loss.
VARIANTS = {
    "fused SGD, compiled": [],
    "fused SGD, eager": ["model.compile=false"],
    "autograd, dense grads, compiled": ["model.fused_sgd=false"],
    "autograd, sparse grads": ["model.fused_sgd=false", "model.compile=false", "model.sparse=true"],
    "autograd, dense grads": ["model.fused_sgd=false", "model.compile=false"],
}


@dataclass
class Run:
    """One training run: its training seconds, ratings trained, and the test RMSE curve."""

    seconds: float = 0.0
    ratings: int = 0
    curve: list[tuple[float, float]] = field(default_factory=list)  # (training seconds so far, test RMSE)

    @property
    def throughput(self) -> float:
        return self.ratings / self.seconds

    def time_to(self, target: float | None) -> float | None:
        return next((seconds for seconds, rmse in self.curve if target is not None and rmse <= target), None)


class TrainingClock(pl.Callback):
    """Training time from the start of fitting, with the test RMSE after each epoch taken off the clock."""

    def __init__(self, test: Ratings):
        self.test = test
        self.run = Run()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._off_clock = time.perf_counter(), 0.0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        paused = time.perf_counter()
        self.run.seconds = paused - self._start - self._off_clock
        self.run.ratings += len(trainer.datamodule.train_ratings)
        with torch.no_grad():
            device = pl_module.device
            prediction = pl_module.predict_ratings(self.test.users.to(device), self.test.movies.to(device)).cpu()
        self.run.curve.append((self.run.seconds, rmse(prediction, self.test.ratings)))
        self._off_clock += time.perf_counter() - paused


def rmse(prediction: torch.Tensor, rating: torch.Tensor) -> float:
    return float((prediction - rating).square().mean().sqrt())


def mfrec_config(args: argparse.Namespace, output_dir: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[
            "experiment=ml100k_fast", f"data.fold={args.fold}", f"model.embedding_dim={FACTORS}",
            f"threads={args.threads}", f"trainer.accelerator={args.accelerator}", "trainer.enable_progress_bar=false",
            "logger=none", "callbacks=none", "test=false", "report.users=[]", "print_config=false",
            f"paths.output_dir={output_dir}", *overrides,
        ])  # fmt: skip


def train_mfrec(args: argparse.Namespace, test: Ratings, epochs: int, overrides: list[str]) -> Run:
    clock = TrainingClock(test)
    with tempfile.TemporaryDirectory() as output_dir:
        train(mfrec_config(args, output_dir, f"trainer.max_epochs={epochs}", *overrides), callbacks=[clock])
    return clock.run


def fold_data(args: argparse.Namespace) -> tuple[Ratings, Ratings, Path]:
    """The fold's training and test ratings as mfrec reads them, and the ml-100k folder."""
    from hydra.utils import instantiate

    with tempfile.TemporaryDirectory() as output_dir:
        cfg = mfrec_config(args, output_dir)
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()  # downloads ml-100k on first use
        datamodule.setup("fit")
    return datamodule.train_ratings, datamodule.test_ratings, Path(cfg.data.source.root) / "ml-100k"


def train_surprise(folder: Path, fold: str, seed: int) -> Run | None:
    try:
        from surprise import SVD, Dataset, Reader, accuracy
    except ImportError:
        return None
    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    trainset = Dataset.load_from_file(str(folder / f"{fold}.base"), reader).build_full_trainset()
    testset = Dataset.load_from_file(str(folder / f"{fold}.test"), reader).build_full_trainset().build_testset()
    algorithm = SVD(n_factors=FACTORS, n_epochs=SURPRISE_EPOCHS, random_state=seed)
    start = time.perf_counter()
    algorithm.fit(trainset)
    seconds = time.perf_counter() - start
    test_rmse = accuracy.rmse(algorithm.test(testset), verbose=False)
    return Run(seconds, trainset.n_ratings * SURPRISE_EPOCHS, [(seconds, test_rmse)])


class TutorialModel(nn.Module):
    """The tutorial's model: a user and a movie embedding, the rating their dot product."""

    def __init__(self, num_users: int, num_movies: int, embedding_dim: int):
        super().__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.movie_embedding = nn.Embedding(num_movies, embedding_dim)

    def forward(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        return (self.user_embedding(user) * self.movie_embedding(movie)).sum(1)


def train_tutorial_loop(train_part: Ratings, test: Ratings, seconds: float) -> Run:
    """The tutorial's per-rating SGD loop, stopped after ``seconds`` of training; test RMSE after each epoch."""
    torch.manual_seed(0)
    model = TutorialModel(train_part.num_users, train_part.num_movies, FACTORS)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    triples = list(zip(train_part.users.tolist(), train_part.movies.tolist(), train_part.ratings.tolist()))
    run = Run()
    while run.seconds < seconds:
        start = time.perf_counter()
        for count, (i, j, rating) in enumerate(triples, 1):
            optimizer.zero_grad()
            prediction = model(torch.tensor([i]), torch.tensor([j]))
            loss = criterion(prediction, torch.tensor([rating]))
            loss.backward()
            optimizer.step()
            if count % 1000 == 0 and run.seconds + time.perf_counter() - start >= seconds:
                break
        run.seconds += time.perf_counter() - start
        run.ratings += count
        with torch.no_grad():
            prediction = model(test.users, test.movies).clamp(1, 5)
        run.curve.append((run.seconds, rmse(prediction, test.ratings)))
    return run


def median_run(runs: list[Run], target: float | None) -> tuple[float, float | None, float]:
    """Median throughput, median time to the target (None unless every run reached it), median final RMSE."""
    times = [run.time_to(target) for run in runs]
    reached = statistics.median(times) if all(t is not None for t in times) else None
    return statistics.median(r.throughput for r in runs), reached, statistics.median(r.curve[-1][1] for r in runs)


def rate(value: float) -> str:
    return f"{value / 1e6:.2f} M/s" if value >= 1e5 else f"{value / 1e3:.1f} k/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", default="u1", help="ml-100k fold: u1 ... u5, ua, ub")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=SURPRISE_EPOCHS, help="mfrec epochs per measured run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Surprise uses one core)")
    parser.add_argument("--accelerator", default="cpu", help="mfrec's trainer.accelerator (cpu, gpu, auto)")
    parser.add_argument("--seed-seconds", type=float, default=30.0, help="time cap of the tutorial's loop")
    parser.add_argument("--target-rmse", type=float, help="RMSE to reach (default: Surprise's on the fold)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    quiet_library_noise()
    for name in ("pytorch_lightning", "lightning.pytorch", "mfrec"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    train_part, test, folder = fold_data(args)
    print(f"ml-100k {args.fold}: {len(train_part):,} training and {len(test):,} test ratings, {FACTORS} factors, "
          f"{args.threads} torch thread(s); medians of {args.repeats} runs\n")  # fmt: skip
    warm_up = {}
    for name in args.variants:  # imports, allocator and torch.compile, once per process like start-up
        start = time.perf_counter()
        train_mfrec(args, test, 1, VARIANTS[name])
        warm_up[name] = time.perf_counter() - start

    surprise_runs: list[Run] = []
    mfrec_runs: dict[str, list[Run]] = {name: [] for name in args.variants}
    for repeat in range(args.repeats):  # alternate, so that a noisy machine slows everyone alike
        surprise = train_surprise(folder, args.fold, seed=repeat)
        if surprise is None:
            if repeat == 0:
                print("scikit-surprise not installed: pip install -e '.[bench]'\n")
        else:
            surprise_runs.append(surprise)
        for name in args.variants:
            mfrec_runs[name].append(train_mfrec(args, test, args.epochs, VARIANTS[name] + [f"seed={repeat}"]))
        print(f"run {repeat + 1}/{args.repeats} done", flush=True)

    target = args.target_rmse
    rows = []
    if surprise_runs:
        surprise_rate = statistics.median(r.throughput for r in surprise_runs)
        surprise_time = statistics.median(r.seconds for r in surprise_runs)
        surprise_rmse = statistics.median(r.curve[-1][1] for r in surprise_runs)
        target = target if target is not None else surprise_rmse
        rows.append((f"Surprise SVD ({SURPRISE_EPOCHS} epochs)", surprise_rate, surprise_time, surprise_rmse))
    for name, runs in mfrec_runs.items():
        rows.append((f"mfrec {name}", *median_run(runs, target)))
    tutorial = train_tutorial_loop(train_part, test, args.seed_seconds)
    rows.append(("plain PyTorch seed loop", tutorial.throughput, tutorial.time_to(target), tutorial.curve[-1][1]))

    target_text = f"RMSE {target:.4f}" if target is not None else "Surprise's RMSE"
    print(f"\n{'':40}{'ratings/s':>12}{'vs Surprise':>13}{'time to ' + target_text:>26}{'vs Surprise':>13}{'final RMSE':>12}")
    for label, throughput, seconds, final in rows:
        speed = f"{throughput / surprise_rate:.2f}x" if surprise_runs else "n/a"
        if seconds is not None:
            reached, ratio = f"{seconds:.3f} s", f"{seconds / surprise_time:.2f}x" if surprise_runs else "n/a"
        elif target is None:
            reached, ratio = "n/a", "n/a"
        else:
            reached, ratio = "not reached" if math.isfinite(final) else "diverged", "-"
        print(f"{label:40}{rate(throughput):>12}{speed:>13}{reached:>26}{ratio:>13}{final:>12.4f}")
    if target is not None and tutorial.time_to(target) is None:
        outcome = "is slow to converge" if math.isfinite(tutorial.curve[-1][1]) else "diverges"
        print(f"(the seed loop trained {tutorial.ratings:,} ratings in {tutorial.seconds:.0f} s; its N(0, 1) "
              f"initialisation at {FACTORS} factors with lr 0.01 {outcome})")
    print(f"mfrec epochs per run: {args.epochs}; one-time warm-up (1 epoch, imports, torch.compile): "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in warm_up.items()))
    if surprise_runs:
        best = max(mfrec_runs, key=lambda name: median_run(mfrec_runs[name], target)[0])
        best_rate, best_time, _ = median_run(mfrec_runs[best], target)
        print(f"\nTargets (mfrec {best}):")
        print(f"  throughput >= 1.0x Surprise's: {best_rate / surprise_rate:.2f}x, "
              f"{'met' if best_rate >= surprise_rate else 'MISSED'}")
        if best_time is None:
            print(f"  time to Surprise's RMSE <= 1.0x its fit time: not reached in {args.epochs} epochs, MISSED")
        else:
            print(f"  time to Surprise's RMSE <= 1.0x its fit time: {best_time / surprise_time:.2f}x, "
                  f"{'met' if best_time <= surprise_time else 'MISSED'}")


if __name__ == "__main__":
    main()
