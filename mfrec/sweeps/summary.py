"""mfrec-sweep-summary: a sweep's jobs ranked by the optimised metric, as a table, a CSV file and a plot.

    mfrec-sweep-summary outputs/train/multiruns/<time> [--metric test/rmse] [--direction max]

Reads each job directory's result.json (mfrec.run_result) and ``.hydra/overrides.yaml``. A job that
failed is listed as failed with its error; one without result.json (killed, or still running) as
"no result". The exit status is 1 when a job failed or has no result.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from mfrec.run_result import COMPLETED, FAILED, INTERRUPTED, PRUNED, RESULT_FILE, read_result

DEFAULT_METRIC = "val/rmse_best"
NO_RESULT = "no result"
CSV_NAME, PLOT_NAME = "summary.csv", "summary.png"
# Listing order of the jobs that have no value of the metric.
_STATUS_ORDER = {COMPLETED: 0, PRUNED: 1, INTERRUPTED: 2, FAILED: 3, NO_RESULT: 4}


@dataclass
class Job:
    name: str  # the job's directory name
    status: str  # completed, failed, pruned or "no result"
    overrides: dict[str, str]  # key -> value, as given on the command line
    metrics: dict[str, float]
    error: str | None


def read_jobs(sweep_dir: Path) -> list[Job]:
    """The sweep's jobs, in job-number order: every sub-directory holding ``.hydra/`` or result.json."""
    job_dirs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir() or (p / RESULT_FILE).is_file()]
    jobs = []
    for job_dir in sorted(job_dirs, key=lambda p: (_job_number(p.name), p.name)):
        result = read_result(job_dir)
        if result is None:
            overrides = _hydra_overrides(job_dir)
            job = Job(job_dir.name, NO_RESULT, overrides, {}, "no result.json: the job was killed or is still running")
        else:
            overrides = _as_dict(result.overrides) if result.overrides else _hydra_overrides(job_dir)
            job = Job(job_dir.name, result.status, overrides, result.metrics, result.error)
        jobs.append(job)
    return jobs


def optimized_metric(sweep_dir: Path, jobs: Sequence[Job]) -> str:
    """The sweep config's top-level ``optimized_metric`` (multirun.yaml, else a job's config), else val/rmse_best."""
    candidates = [sweep_dir / "multirun.yaml"] + [sweep_dir / job.name / ".hydra" / "config.yaml" for job in jobs[:1]]
    for path in candidates:
        if path.is_file():
            config = yaml.safe_load(path.read_text()) or {}
            if config.get("optimized_metric"):
                return str(config["optimized_metric"])
    return DEFAULT_METRIC


def default_direction(metric: str) -> str:
    """mfrec's ranking metrics (``ndcg@10``, ``recall@10``...) are maximised, rating errors minimised."""
    return "max" if "@" in metric else "min"


def ranked(jobs: Sequence[Job], metric: str, direction: str) -> list[Job]:
    """Jobs with a value of ``metric``, best first, then the others: completed, pruned, failed, no result."""
    scored = [job for job in jobs if _value(job, metric) is not None]
    scored.sort(key=lambda job: _value(job, metric), reverse=direction == "max")
    others = sorted((job for job in jobs if job not in scored), key=lambda job: _STATUS_ORDER.get(job.status, 5))
    return scored + others


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value differs between jobs (all keys when nothing differs), in command-line order."""
    keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    varying = [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
    return varying or keys


def format_table(jobs: Sequence[Job], metric: str, direction: str, sweep_dir: Path) -> str:
    keys = swept_keys(jobs)
    with_errors = any(job.error for job in jobs)
    header = ["rank", metric, "status", *keys, "job", *(["error"] if with_errors else [])]
    rows = []
    for rank, job in enumerate(ranked(jobs, metric, direction), start=1):
        value = _value(job, metric)
        rows.append([
            str(rank) if value is not None else "-",
            f"{value:.4f}" if value is not None else "-",
            job.status,
            *(job.overrides.get(key, "") for key in keys),
            job.name,
            *([_shortened(job.error or "", 100)] if with_errors else []),
        ])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    counts = ", ".join(f"{sum(job.status == status for job in jobs)} {status}" for status in _STATUS_ORDER
                       if any(job.status == status for job in jobs))
    title = f"Sweep {sweep_dir}: {_count(len(jobs), 'job')} ({counts}), ranked by {metric} ({direction})"
    return "\n".join([title, *lines])


def write_csv(jobs: Sequence[Job], metric: str, direction: str, path: Path) -> Path:
    """One row per job, best first: rank, job, status, the swept values, every metric, the error."""
    keys = swept_keys(jobs)
    metric_names = [metric] + sorted({name for job in jobs for name in job.metrics} - {metric})
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["rank", "job", "status", *keys, *metric_names, "error"])
        for rank, job in enumerate(ranked(jobs, metric, direction), start=1):
            writer.writerow([
                rank if _value(job, metric) is not None else "",
                job.name,
                job.status,
                *(job.overrides.get(key, "") for key in keys),
                *(job.metrics.get(name, "") for name in metric_names),
                job.error or "",
            ])
    return path


def plot_metric(jobs: Sequence[Job], metric: str, direction: str, path: Path) -> Path | None:
    """A PNG with one panel per swept parameter: the metric of every job that has it against the value.

    Returns None (and says why) without matplotlib (``pip install -e ".[sweep]"``) or without values to plot.
    """
    try:
        from matplotlib.figure import Figure  # the object API: no GUI backend, no global state
    except ImportError:
        print(f"No plot: matplotlib is not installed (pip install -e \".[sweep]\"); {path.name} not written")
        return None
    scored = [job for job in jobs if _value(job, metric) is not None]
    keys = [key for key in swept_keys(jobs) if any(key in job.overrides for job in scored)]
    if not scored or not keys:
        print(f"No plot: no job has a value of {metric}; {path.name} not written")
        return None
    best = ranked(scored, metric, direction)[0]
    columns = min(len(keys), 3)  # a grid, so that a search over many parameters stays readable
    rows = -(-len(keys) // columns)
    figure = Figure(figsize=(4.5 * columns, 3.5 * rows + 0.5), layout="constrained")
    missing = len(jobs) - len(scored)
    best_name = best.name if len(best.name) <= 60 else best.name[:57] + "..."  # Optuna trials' names run long
    figure.suptitle(f"{metric} ({direction}); best: {best_name}" + (f"; {_count(missing, 'job')} without a value not shown" if missing else ""),
                    fontsize="medium")
    grid = figure.subplots(rows, columns, squeeze=False).flat
    for unused in list(grid)[len(keys):]:
        unused.set_visible(False)
    for axes, key in zip(figure.axes, keys):
        with_key = [job for job in scored if key in job.overrides]
        values = [job.overrides[key] for job in with_key]
        numbers = _as_numbers(values)
        if numbers is not None:
            xs = numbers
            if min(numbers) > 0 and max(numbers) >= 10 * min(numbers):  # e.g. learning rates 0.1, 0.01, 0.001
                axes.set_xscale("log")
        else:  # categorical values, in sorted order
            categories = sorted(set(values))
            xs = [categories.index(value) for value in values]
            axes.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ys = [_value(job, metric) for job in with_key]
        axes.scatter(xs, ys, color="tab:blue")
        axes.scatter([x for x, job in zip(xs, with_key) if job is best], [_value(best, metric)] * (best in with_key),
                     color="tab:red", marker="*", s=150)
        axes.set_xlabel(key)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


class SummaryError(Exception):
    """The sweep directory or the metric asked for is not usable."""


def summarize(sweep_dir: str | Path, metric: str | None = None, direction: str | None = None) -> list[Job]:
    """Print the table and write summary.csv and summary.png into the sweep directory; returns the jobs.

    ``metric`` defaults to the sweep's own (``optimized_metric``, else val/rmse_best); when no job
    reported that one (data without a validation split), the jobs are listed in job order.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SummaryError(f"{sweep_dir} is not a directory; give a sweep directory, e.g. outputs/train/multiruns/<time>")
    jobs = read_jobs(sweep_dir)
    if not jobs:
        raise SummaryError(f"{sweep_dir} holds no sweep jobs (sub-directories with .hydra/ or {RESULT_FILE})")
    reported = sorted({name for job in jobs for name in job.metrics})
    if metric and reported and metric not in reported:
        raise SummaryError(f"no job reported the metric '{metric}'; the jobs reported: {', '.join(reported)}")
    metric = metric or optimized_metric(sweep_dir, jobs)
    direction = direction or default_direction(metric)
    print(format_table(jobs, metric, direction, sweep_dir))
    if reported and metric not in reported:
        print(f"No job reported {metric} (no validation split?); rank by another with: "
              f"mfrec-sweep-summary {sweep_dir} --metric <one of {', '.join(reported)}>")
    written = [write_csv(jobs, metric, direction, sweep_dir / CSV_NAME), plot_metric(jobs, metric, direction, sweep_dir / PLOT_NAME)]
    print("Written: " + ", ".join(str(path) for path in written if path is not None))
    return jobs


def failed_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Jobs that failed or left no result.json; pruned ones were stopped on purpose."""
    return [job for job in jobs if job.status in (FAILED, NO_RESULT)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mfrec-sweep-summary",
        description="Rank a sweep's jobs by a metric: print a table, write summary.csv and summary.png into the sweep directory.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. outputs/train/multiruns/<time>")
    parser.add_argument("--metric", help=f"metric to rank by (default: the sweep's optimized_metric, else {DEFAULT_METRIC})")
    parser.add_argument("--direction", choices=["min", "max"], help="best is the lowest or highest (default: max for @K ranking metrics, else min)")
    args = parser.parse_args(argv)
    try:
        jobs = summarize(args.sweep_dir, args.metric, args.direction)
    except SummaryError as error:
        print(f"mfrec-sweep-summary: error: {error}", file=sys.stderr)
        return 2
    return 1 if failed_jobs(jobs) else 0


def _value(job: Job, metric: str) -> float | None:
    value = job.metrics.get(metric) if job.status == COMPLETED else None
    return value if value is not None and math.isfinite(value) else None


def _job_number(name: str) -> int:
    number = name.split("-", 1)[0]
    return int(number) if number.isdigit() else sys.maxsize


def _as_dict(overrides: Sequence[str]) -> dict[str, str]:
    return dict(str(override).partition("=")[::2] for override in overrides)


def _hydra_overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    return _as_dict(yaml.safe_load(path.read_text()) or []) if path.is_file() else {}


def _as_numbers(values: Sequence[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _shortened(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
