"""mfrec's `experiment=ml100k` against Surprise's SVD and SVD++ on MovieLens 100K's folds u1-u5.

Every model sees the same data: the training and test parts of each predefined fold as mfrec reads
them (`data.split=predefined`), handed to Surprise as a DataFrame. Test RMSE and MAE are each
library's own predictions (clipped to 1-5); NDCG@10 ranks every movie a user did not rate in
training with each model's scores through the same `mfrec.metrics.ranking_metrics`. The target of
issue 5 is a mean test RMSE at or below 0.905 over u1-u5.

    MFREC_DATA_DIR=../shared/datasets python scripts/benchmark_accuracy.py
    python scripts/benchmark_accuracy.py --folds u1 u2 --no-svdpp
    python scripts/benchmark_accuracy.py model.embedding_dim=50     # extra mfrec overrides

Surprise is optional (`pip install -e ".[bench]"`); without it only mfrec's rows are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mfrec.app import CONFIG_DIR, quiet_library_noise
from mfrec.data import RatingsDataModule
from mfrec.data.ratings import Ratings
from mfrec.metrics import ranking_metrics
from mfrec.train import train

TARGET_RMSE = 0.905
FOLDS = ["u1", "u2", "u3", "u4", "u5"]
# Quiet, in-process runs: no TensorBoard, no checkpoints, no report, no progress bar.
QUIET = [
    "logger=none", "callbacks=none", "print_config=false", "report.users=[]",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
]


def mfrec_fold(fold: str, overrides: list[str], output_dir: str) -> dict[str, float]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ml100k", f"data.fold={fold}", *QUIET,
                                          f"paths.output_dir={output_dir}", *overrides])
    start = time.perf_counter()
    metrics = train(cfg)
    return {"rmse": metrics["test/rmse"], "mae": metrics["test/mae"], "ndcg@10": metrics["test/ndcg@10"],
            "seconds": time.perf_counter() - start}


def fold_data(fold: str) -> tuple[Ratings, Ratings]:
    """The fold's training and test ratings exactly as mfrec splits them."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ml100k", f"data.fold={fold}"])
    datamodule: RatingsDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.train_ratings, datamodule.test_ratings


def surprise_fold(algorithm: str, train_part: Ratings, test_part: Ratings) -> dict[str, float]:
    import pandas as pd
    from surprise import SVD, Dataset, Reader, SVDpp

    frame = pd.DataFrame({"user": train_part.users.numpy(), "movie": train_part.movies.numpy(),
                          "rating": train_part.ratings.numpy()})
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=train_part.rating_scale)).build_full_trainset()
    model = {"SVD": SVD, "SVD++": SVDpp}[algorithm](random_state=0)
    start = time.perf_counter()
    model.fit(trainset)
    seconds = time.perf_counter() - start
    triples = zip(test_part.users.tolist(), test_part.movies.tolist(), test_part.ratings.tolist())
    predictions = np.array([model.predict(user, movie).est for user, movie, _ in triples])
    errors = predictions - test_part.ratings.numpy()
    ndcg = ndcg_at_10(surprise_scores(model, trainset, train_part), train_part, test_part)
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors))),
            "ndcg@10": ndcg, "seconds": seconds}


def surprise_scores(model, trainset, train_part: Ratings) -> Callable[[torch.Tensor], torch.Tensor]:
    """Surprise's estimate (before clipping) for every (user, movie), in mfrec's index space."""
    num_users, num_movies = train_part.num_users, train_part.num_movies
    user_factors = np.zeros((num_users, model.n_factors))
    movie_factors = np.zeros((num_movies, model.n_factors))
    user_bias, movie_bias = np.zeros(num_users), np.zeros(num_movies)
    for inner in trainset.all_users():
        user = trainset.to_raw_uid(inner)
        user_bias[user] = model.bu[inner]
        user_factors[user] = model.pu[inner]
        if hasattr(model, "yj"):  # SVD++: the user's factor plus the implicit factors of what they rated
            rated = [movie for movie, _ in trainset.ur[inner]]
            user_factors[user] += model.yj[rated].sum(0) / np.sqrt(len(rated))
    for inner in trainset.all_items():
        movie = trainset.to_raw_iid(inner)
        movie_bias[movie] = model.bi[inner]
        movie_factors[movie] = model.qi[inner]
    scores = trainset.global_mean + user_bias[:, None] + movie_bias[None, :] + user_factors @ movie_factors.T
    scores = torch.from_numpy(scores).float()
    return lambda users: scores[users].clone()


def ndcg_at_10(score_users: Callable[[torch.Tensor], torch.Tensor], train_part: Ratings, test_part: Ratings) -> float:
    metrics = ranking_metrics(score_users, train_part.num_movies, train_part.users, train_part.movies,
                              test_part.users, test_part.movies, test_part.ratings, ks=[10], max_users=None)
    return float(metrics["ndcg@10"])


def print_table(results: dict[str, dict[str, dict[str, float]]], folds: list[str]) -> None:
    header = f"{'model':<8} {'metric':<9}" + "".join(f"{fold:>9}" for fold in folds) + f"{'mean':>9}"
    print(header)
    print("-" * len(header))
    for model, by_fold in results.items():
        for metric in ("rmse", "mae", "ndcg@10", "seconds"):
            values = [by_fold[fold][metric] for fold in folds]
            cells = "".join(f"{value:>9.4f}" for value in values)
            print(f"{model:<8} {metric:<9}{cells}{statistics.mean(values):>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="extra mfrec-train overrides, e.g. model.embedding_dim=50")
    parser.add_argument("--folds", nargs="+", default=FOLDS, choices=FOLDS)
    parser.add_argument("--no-svdpp", action="store_true", help="skip SVD++ (about 10 s per fold)")
    args = parser.parse_args()
    quiet_library_noise()
    torch.set_num_threads(1)  # the same single thread Surprise's Cython loop uses

    if importlib.util.find_spec("surprise"):
        peers = ["SVD"] if args.no_svdpp else ["SVD", "SVD++"]
    else:
        print("scikit-surprise not installed: pip install -e '.[bench]' to compare with it\n")
        peers = []

    results: dict[str, dict[str, dict[str, float]]] = {"mfrec": {}, **{peer: {} for peer in peers}}
    with tempfile.TemporaryDirectory() as output_dir:
        for fold in args.folds:
            results["mfrec"][fold] = mfrec_fold(fold, args.overrides, output_dir)
            if peers:
                train_part, test_part = fold_data(fold)
                for peer in peers:
                    results[peer][fold] = surprise_fold(peer, train_part, test_part)
            print(f"{fold}: " + ", ".join(f"{name} {by_fold[fold]['rmse']:.4f}" for name, by_fold in results.items()),
                  flush=True)

    print("\nTest metrics per fold (seconds: fit time)")
    print_table(results, args.folds)
    mean_rmse = statistics.mean(results["mfrec"][fold]["rmse"] for fold in args.folds)
    verdict = "met" if mean_rmse <= TARGET_RMSE else f"missed by {mean_rmse - TARGET_RMSE:.4f}"
    print(f"\nmfrec mean test RMSE {mean_rmse:.4f}; target <= {TARGET_RMSE}: {verdict}")


if __name__ == "__main__":
    main()
