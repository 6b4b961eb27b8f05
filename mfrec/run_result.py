"""result.json: how a run ended, left in its directory for sweep summaries and other tools.

``{"status": "completed" | "failed" | "pruned" | "interrupted", "metrics": {name: value}, "error": str | null,
"overrides": [the run's command-line overrides]}``
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra.errors import InstantiationException

from mfrec.errors import ConfigError, DataError, Interrupted

RESULT_FILE = "result.json"
# interrupted: stopped by SIGTERM / Ctrl-C at an epoch's end, resumable with resume=<run dir>
COMPLETED, FAILED, PRUNED, INTERRUPTED = "completed", "failed", "pruned", "interrupted"


@dataclass
class RunResult:
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    overrides: list[str] = field(default_factory=list)


def is_pruned(error: BaseException) -> bool:
    """Optuna's TrialPruned (raised by a pruning callback), recognised without importing optuna."""
    return type(error).__name__ == "TrialPruned"


def _cause(error: BaseException) -> BaseException:
    """The error itself, or what a config's ``_target_`` raised when Hydra wrapped it."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        return error.__cause__
    return error


def write_result(run_dir: str | Path, result: RunResult) -> Path:
    """Write ``run_dir/result.json`` atomically: a reader sees the previous file or the new one, never half of one."""
    path = Path(run_dir) / RESULT_FILE
    partial = path.with_name(f".{RESULT_FILE}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(result), indent=2, allow_nan=True) + "\n")
    os.replace(partial, path)
    return path


def read_result(run_dir: str | Path) -> RunResult | None:
    """The run's result, or None when it wrote none (still running, or killed)."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    fields = json.loads(path.read_text())
    return RunResult(
        status=fields["status"],
        metrics={name: float(value) for name, value in (fields.get("metrics") or {}).items()},
        error=fields.get("error"),
        overrides=list(fields.get("overrides") or []),
    )


def recording_result(
    run_dir: str | Path,
    overrides: list[str],
    work: Callable[[], dict[str, float]],
    record_startup_errors: bool = True,
) -> dict[str, float]:
    """Run ``work`` (which returns the run's metrics) and leave result.json saying how it ended.

    Without ``record_startup_errors`` a bad config or data (ConfigError, DataError: nothing ran)
    writes nothing: a single run that fails at start-up leaves no directory behind, and a run
    pointed at with ``resume=`` keeps the result it had.
    """
    try:
        metrics = work()
    except Exception as error:
        cause = _cause(error)
        if record_startup_errors or not isinstance(cause, (ConfigError, DataError)):
            status = PRUNED if is_pruned(cause) else INTERRUPTED if isinstance(cause, Interrupted) else FAILED
            write_result(run_dir, RunResult(status, error=f"{type(cause).__name__}: {cause}", overrides=overrides))
        raise
    write_result(run_dir, RunResult(COMPLETED, metrics=dict(metrics), overrides=overrides))
    return metrics
