"""Time `mfrec.metrics.ranking_metrics` at MovieLens-25M-like size against its 30 s target.

Random data of the full size: 160,000 users x 60,000 movies, dim-64 embeddings, 25M training
pairs and 2.5M test ratings (half of them >= 4.0), 10,000 sampled users, top-10/20/50. `--scale`
shrinks every size (users, movies, pairs) by that factor for a quick run. Building the random data
is not timed; the peak RSS printed is the whole process's (data included), next to its RSS before
the call so that the metric's own extra memory shows.

    python scripts/benchmark_ranking.py                # full size
    python scripts/benchmark_ranking.py --scale 0.1
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from mfrec.metrics import ranking_metrics

TARGET_SECONDS = 30.0


def rss_mib() -> float:
    """Current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every size by this factor")
    parser.add_argument("--max-users", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    num_users, num_movies = int(160_000 * args.scale), int(60_000 * args.scale)
    num_train, num_test = int(25_000_000 * args.scale), int(2_500_000 * args.scale)
    generator = torch.Generator().manual_seed(0)
    print(f"building {num_users:,} users x {num_movies:,} movies, {num_train:,} train pairs, "
          f"{num_test:,} test ratings, dim {args.dim} (torch threads: {torch.get_num_threads()})")  # fmt: skip
    user_embedding = torch.randn(num_users, args.dim, generator=generator) / args.dim**0.25
    movie_embedding = torch.randn(num_movies, args.dim, generator=generator) / args.dim**0.25
    train_users = torch.randint(0, num_users, (num_train,), generator=generator)
    train_movies = torch.randint(0, num_movies, (num_train,), generator=generator)
    test_users = torch.randint(0, num_users, (num_test,), generator=generator)
    test_movies = torch.randint(0, num_movies, (num_test,), generator=generator)
    test_ratings = torch.randint(1, 11, (num_test,), generator=generator) / 2  # 0.5 .. 5.0

    def score_users(users: torch.Tensor) -> torch.Tensor:
        return user_embedding[users] @ movie_embedding.T

    rss_before = rss_mib()
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = ranking_metrics(
            score_users, num_movies, train_users, train_movies, test_users, test_movies, test_ratings,
            ks=args.ks, chunk_size=args.chunk_size, max_users=args.max_users,
        )  # fmt: skip
        timings.append(time.perf_counter() - start)
    for name, value in result.items():
        print(f"  {name:>14} {value:.6g}")
    best = min(timings)
    verdict = "within" if best < TARGET_SECONDS else "OVER"
    print(f"time: {best:.2f} s (runs: {', '.join(f'{t:.2f}' for t in timings)}), {verdict} the "
          f"{TARGET_SECONDS:.0f} s target")  # fmt: skip
    print(f"RSS before the call: {rss_before:.0f} MiB, peak RSS of the process: {peak_rss_mib():.0f} MiB "
          f"(+{peak_rss_mib() - rss_before:.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
