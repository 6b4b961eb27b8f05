"""Benchmark loading a MovieLens-25M-sized ratings.csv: first parse, reload from the cache, peak memory.

    python scripts/benchmark_loading.py              # 25M lines, as ML-25M
    python scripts/benchmark_loading.py --lines 1000000 --dir /tmp/bench --keep

Writes synthetic data in ML-25M's layout (``<dir>/ml-25m/ratings.csv`` with the header
userId,movieId,rating,timestamp, sorted by user then movie like the real file, and a movies.csv),
then runs each phase in a fresh Python process, started from a parent that holds no data (Linux keeps
``ru_maxrss`` across fork and exec), so that each phase's peak RSS (``getrusage``) is its own:

* parse  - ``MovieLens("ml-25m").load()`` with no cache: parse, number ids, write the cache;
* reload - the same call again: served from the cache.

and prints the figures against the targets (parse < 60 s, reload < 5 s, peak < 4 GB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = {"parse_s": 60.0, "reload_s": 5.0, "peak_gb": 4.0}
ML25M_USERS, ML25M_MOVIES, ML25M_RATINGS, ML25M_MAX_MOVIE_ID = 162_541, 59_047, 25_000_095, 209_171


def write_dataset(root: Path, lines: int, seed: int = 0) -> Path:
    """Write ``root/ml-25m/{ratings,movies}.csv`` with ``lines`` ratings; return the folder."""
    from mfrec.data.synthetic import SyntheticRatings

    scale = lines / ML25M_RATINGS
    users = max(2, min(ML25M_USERS, int(round(ML25M_USERS * scale ** 0.5))))
    movies = max(2, min(ML25M_MOVIES, int(round(ML25M_MOVIES * scale ** 0.5))))
    ratings = SyntheticRatings(users, movies, lines, rating_scale=(0.5, 5.0), seed=seed).load()
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(np.arange(1, ML25M_MAX_MOVIE_ID + 1), size=movies, replace=False))  # sparse, like ML
    user_index, movie_index = ratings.users.numpy(), ratings.movies.numpy()
    order = np.argsort(user_index * movies + movie_index, kind="stable")  # the real file is sorted by user, movie

    folder = root / "ml-25m"
    folder.mkdir(parents=True, exist_ok=True)
    user_column, movie_column = user_index[order] + 1, movie_ids[movie_index[order]]
    stars = np.char.mod("%.1f", np.arange(1, 11) / 2)  # the ten half-star values as text
    rating_text = stars[(ratings.ratings.numpy()[order] * 2).astype(np.int64) - 1]
    time_column = ratings.timestamps.numpy()[order]
    chunk = 2_000_000
    with open(folder / "ratings.csv", "w", encoding="utf-8", newline="\n") as stream:
        stream.write("userId,movieId,rating,timestamp\n")
        for start in range(0, lines, chunk):
            part = slice(start, start + chunk)
            rows = zip(user_column[part].tolist(), movie_column[part].tolist(), rating_text[part].tolist(), time_column[part].tolist())
            stream.write("".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows))
    with open(folder / "movies.csv", "w", encoding="utf-8", newline="\n") as stream:
        stream.write("movieId,title,genres\n")
        stream.write("".join(f'{movie},"Synthetic Movie {movie}, The (2000)",Drama\n' for movie in movie_ids.tolist()))
    return folder


def run_phase(phase: str, root: Path, lines: int = 0) -> dict:
    """Run one phase in a child process and return its JSON report."""
    command = [sys.executable, __file__, "--phase", phase, "--dir", str(root), "--lines", str(lines)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(phase: str, root: Path, lines: int) -> None:
    """One phase, in its own process: write the data, or time ``load()`` and report the peak RSS."""
    import resource

    if phase == "write":
        start = time.perf_counter()
        folder = write_dataset(root, lines)
        size = (folder / "ratings.csv").stat().st_size
        print(json.dumps({"folder": str(folder), "seconds": time.perf_counter() - start, "mib": size / 2**20}))
        return

    import mfrec.data.cache as cache
    from mfrec.data.movielens import MovieLens

    writing = {"seconds": 0.0}
    if phase == "parse":
        shutil.rmtree(root / "ml-25m" / cache.LOCAL_DIR_NAME, ignore_errors=True)
        write = cache._write

        def timed_write(*args, **kwargs):  # separate the cache write from the parse
            start = time.perf_counter()
            try:
                return write(*args, **kwargs)
            finally:
                writing["seconds"] += time.perf_counter() - start

        cache._write = timed_write
    start = time.perf_counter()
    ratings = MovieLens("ml-25m", root=root, download=False).load()
    seconds = time.perf_counter() - start
    report = {
        "phase": phase, "seconds": seconds, "cache_write_s": writing["seconds"], "ratings": len(ratings),
        "users": ratings.num_users, "movies": ratings.num_movies,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=25_000_000, help="ratings to write (default: 25M, as ML-25M)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the data (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the written data")
    parser.add_argument("--phase", choices=("write", "parse", "reload"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args.phase, args.dir, args.lines)
        return

    root = args.dir or Path(tempfile.mkdtemp(prefix="mfrec-bench-"))
    try:
        written = run_phase("write", root, args.lines)
        print(f"wrote {args.lines:,} ratings ({written['mib']:,.0f} MiB) to {written['folder']} in {written['seconds']:.1f} s")
        parse, reload = run_phase("parse", root), run_phase("reload", root)
        print(f"loaded {parse['ratings']:,} ratings of {parse['users']:,} users and {parse['movies']:,} movies")
        peak = max(parse["peak_rss_gb"], reload["peak_rss_gb"])
        rows = [
            ("first parse (incl. cache write)", f"{parse['seconds']:.1f} s", f"< {TARGETS['parse_s']:.0f} s", parse["seconds"] < TARGETS["parse_s"]),
            ("  of which cache write", f"{parse['cache_write_s']:.1f} s", "", None),
            ("reload from cache", f"{reload['seconds']:.2f} s", f"< {TARGETS['reload_s']:.0f} s", reload["seconds"] < TARGETS["reload_s"]),
            ("peak RSS, parse", f"{parse['peak_rss_gb']:.2f} GB", f"< {TARGETS['peak_gb']:.0f} GB", parse["peak_rss_gb"] < TARGETS["peak_gb"]),
            ("peak RSS, reload", f"{reload['peak_rss_gb']:.2f} GB", f"< {TARGETS['peak_gb']:.0f} GB", reload["peak_rss_gb"] < TARGETS["peak_gb"]),
        ]
        for name, value, target, ok in rows:
            verdict = "" if ok is None else ("ok" if ok else "MISSED")
            print(f"{name:<34}{value:>10}  {target:<8} {verdict}")
        if peak >= TARGETS["peak_gb"] or parse["seconds"] >= TARGETS["parse_s"] or reload["seconds"] >= TARGETS["reload_s"]:
            sys.exit(1)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif args.dir is None:
            print(f"data kept in {root}")


if __name__ == "__main__":
    main()
