"""The Optuna study behind mfrec's sweeper: ask a batch of trials, launch them as Hydra jobs, tell the outcomes.

The study lives in its storage (by default a SQLite file in the sweep directory), so running the same
command again continues it: ``n_trials`` is the study's total, and a re-run runs only the missing ones.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString, Transformer
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.mfrec_optuna_sweeper._search_space import SearchSpace, parse_search_space
from mfrec.errors import ConfigError, DataError, Interrupted, MfrecError

if TYPE_CHECKING:
    from hydra_plugins.mfrec_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)

# A trial's own failure (a diverged run, an exception) is recorded and the study goes on. These stop it:
# every further trial would fail the same way, or the user asked to stop.
STOPS_THE_STUDY = (ConfigError, DataError, Interrupted)
# User attribute of the trials failed because the study stopped (theirs or another trial's error,
# Ctrl-C): they do not count toward n_trials, so a re-run makes up for them.
INTERRUPTED = "interrupted"
RESULTS_FILE = "optimization_results.yaml"


class StudyStopped(MfrecError):
    """Ends the sweep: printed as one line, the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1):
        self.exit_code = exit_code
        super().__init__(message)


def run_study(sweeper: OptunaSweeper, arguments: list[str]) -> None:
    """Run the missing trials of the configured study, then print and write its best trial."""
    config = sweeper.config
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    space = parse_search_space(sweeper.params, arguments, parser)
    _check_settings(sweeper, space)
    # One point composed before anything is written: a misspelled key stops here, not at a trial.
    try:
        sweeper.validate_batch_is_legal([space.overrides({d.name: d.some_value() for d in space.dimensions})])
    except HydraException as error:
        raise ConfigError("hydra.sweeper.params", f"a trial's config does not compose: {error}") from None

    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    storage = sweeper.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
    study = _open_study(sweeper, storage)
    for params in sweeper.enqueue_trials:
        study.enqueue_trial(OmegaConf.to_container(params, resolve=True), skip_if_exists=True)

    counts = _counts(study)
    missing = sweeper.n_trials - _done(counts)
    log.info(
        "Optuna study '%s' in %s: %d of n_trials=%d done (%s); %s", study.study_name, storage, _done(counts),
        sweeper.n_trials, _format_counts(counts), f"running {missing} more" if missing > 0 else "nothing to run",
    )
    stopped: StudyStopped | None = None
    try:
        while (missing := sweeper.n_trials - _done(_counts(study))) > 0:
            trials = [study.ask(space.distributions) for _ in range(min(sweeper.n_jobs, missing))]
            _run_batch(sweeper, study, space, storage, trials)
    except StudyStopped as error:
        stopped = error
    _report(study, sweeper, storage, sweep_dir, space)
    if stopped is not None:
        raise stopped


def _check_settings(sweeper: OptunaSweeper, space: SearchSpace) -> None:
    if not sweeper.study_name:
        raise ConfigError("hydra.sweeper.study_name", "is required (there is no hparams_search config to name it after)")
    if sweeper.direction not in ("minimize", "maximize"):
        raise ConfigError("hydra.sweeper.direction", f"got {sweeper.direction!r}; valid: minimize, maximize")
    for key in ("n_trials", "n_jobs"):
        value = getattr(sweeper, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"hydra.sweeper.{key}", f"got {value!r}; valid: an integer >= 1")
    if not space.dimensions:
        raise ConfigError("hydra.sweeper.params", "nothing to search: give e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1))")
    searched = {dimension.name: dimension for dimension in space.dimensions}
    for params in sweeper.enqueue_trials:
        for name, value in params.items():
            if name not in searched:
                raise ConfigError("hydra.sweeper.enqueue_trials", f"{name} is not searched; searched: {', '.join(searched)}")
            choices = getattr(searched[name].distribution, "choices", None)
            if choices is not None and value not in choices:
                raise ConfigError("hydra.sweeper.enqueue_trials", f"{name}={value!r} is not one of its choices {list(choices)}")


def _open_study(sweeper: OptunaSweeper, storage: str) -> optuna.Study:
    try:
        study = optuna.create_study(
            study_name=sweeper.study_name, storage=storage, direction=sweeper.direction, load_if_exists=True
        )
    except Exception as error:  # SQLAlchemy's and the database driver's many errors, all about the URL
        raise ConfigError("hydra.sweeper.storage", f"cannot open study '{sweeper.study_name}' in {storage}: {error}") from None
    if study.direction != StudyDirection[sweeper.direction.upper()]:
        raise ConfigError(
            "hydra.sweeper.direction",
            f"study '{study.study_name}' in {storage} was created to {study.direction.name.lower()}; "
            "give that direction or another hydra.sweeper.study_name",
        )
    sampler = OmegaConf.to_container(sweeper.sampler, resolve=True)
    if sampler.get("seed") is not None:
        # A continued study draws a new random stream: the same seed would repeat the first run's draws.
        sampler["seed"] += len(study.get_trials(deepcopy=False))
    study.sampler = _instantiate("hydra.sweeper.sampler", sampler)
    study.pruner = _instantiate("hydra.sweeper.pruner", _pruner_config(sweeper))
    return study


def _pruner_config(sweeper: OptunaSweeper) -> dict[str, Any]:
    if sweeper.pruner is None:
        return {"_target_": "optuna.pruners.NopPruner"}
    return OmegaConf.to_container(sweeper.pruner, resolve=True)


def _instantiate(key: str, config: Any) -> Any:
    try:
        return instantiate(config)
    except HydraException as error:
        raise ConfigError(key, str(error)) from None


def _run_batch(sweeper: OptunaSweeper, study: optuna.Study, space: SearchSpace, storage: str, trials: list[Trial]) -> None:
    """Launch the trials (in parallel with a parallel launcher) and tell the study each one's outcome."""
    told: set[int] = set()
    stop: StudyStopped | None = None
    try:
        for run in _consecutive_runs(trials):
            jobs = [[*space.overrides(trial.params), _trial_override(sweeper, storage, trial.number)] for trial in run]
            # Job numbers (hence the sweep subdirectories) are the trial numbers, unique across re-runs.
            returns = sweeper.launcher.launch(jobs, initial_job_idx=run[0].number)
            for trial, job in zip(run, returns):
                error = _tell(study, trial, job, sweeper.config.get("optimized_metric"))
                told.add(trial.number)
                stop = stop or error
            if stop is not None:
                raise stop
    finally:
        for trial in trials:
            if trial.number not in told:
                _fail(study, trial, "the study stopped before this trial finished", interrupted=True)


def _consecutive_runs(trials: list[Trial]) -> list[list[Trial]]:
    """The trials split where their numbers jump (another worker took the numbers in between)."""
    runs: list[list[Trial]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


def _trial_override(sweeper: OptunaSweeper, storage: str, number: int) -> str:
    """``optuna_trial=...``: the job reports its validation metric to this trial and stops when pruned."""
    trial = {
        "_target_": "mfrec.pruning.OptunaPruning",
        "storage": storage,
        "study_name": sweeper.study_name,
        "trial_number": number,
        "monitor": sweeper.report_metric,
        "pruner": _pruner_config(sweeper),
    }
    return f"optuna_trial={Transformer.str(_quoted(trial))}"


def _quoted(value: Any) -> Any:
    """Strings quoted, so that any URL or name survives Hydra's override grammar."""
    if isinstance(value, str):
        return QuotedString(text=value, quote=Quote.single)
    if isinstance(value, dict):
        return {key: _quoted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_quoted(item) for item in value]
    return value


def _tell(study: optuna.Study, trial: Trial, job: JobReturn, metric: str | None) -> StudyStopped | None:
    """Record the job's outcome; the error that must stop the study, if it raised one."""
    if job.status != JobStatus.COMPLETED:
        # What the job raised (``job.return_value`` would re-raise it, with an "Error executing job" line).
        error = job._return_value
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned %s", trial.number, error)
            return None
        if isinstance(error, Interrupted):  # SIGTERM or Ctrl-C, the run checkpointed its epoch
            _fail(study, trial, f"stopped by {signal.Signals(error.signum).name}", interrupted=True)
            return StudyStopped(
                f"the study stopped during trial {trial.number} (not counted). "
                "Run the same command again to continue the study.", error.exit_code,
            )
        stops = isinstance(error, STOPS_THE_STUDY)
        _fail(study, trial, f"{type(error).__name__}: {error}", interrupted=stops)
        return StudyStopped(f"trial {trial.number} stopped the study: {error}") if stops else None
    value = job.return_value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(study, trial, f"returned {value!r} for {metric}", interrupted=False)
        return None
    study.tell(trial, float(value))
    log.info("Trial %d: %s = %.6g", trial.number, metric, value)
    return None


def _fail(study: optuna.Study, trial: Trial, reason: str, interrupted: bool) -> None:
    trial.set_user_attr("fail_reason", reason)
    if interrupted:
        trial.set_user_attr(INTERRUPTED, True)
    study.tell(trial, state=TrialState.FAIL)
    log.warning("Trial %d failed: %s", trial.number, reason)


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = dict.fromkeys(("complete", "pruned", "failed", "interrupted", "running", "waiting"), 0)
    for trial in study.get_trials(deepcopy=False):
        counts[_category(trial)] += 1
    return counts


def _category(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "interrupted" if trial.user_attrs.get(INTERRUPTED) else "failed"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.RUNNING: "running"}.get(
        trial.state, "waiting"
    )


def _done(counts: dict[str, int]) -> int:
    """The trials that count toward n_trials: those that ran to their own end."""
    return counts["complete"] + counts["pruned"] + counts["failed"]


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items() if count) or "no trials yet"


def _report(study: optuna.Study, sweeper: OptunaSweeper, storage: str, sweep_dir: Path, space: SearchSpace) -> None:
    """Print the counts and the best trial, and write them to optimization_results.yaml in the sweep directory."""
    metric = sweeper.config.get("optimized_metric")
    trials = study.get_trials(deepcopy=False)
    counts = _counts(study)
    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if completed else None
    results = {
        "study_name": study.study_name,
        "storage": storage,
        "optimized_metric": metric,
        "direction": sweeper.direction,
        "n_trials": sweeper.n_trials,
        "trials": counts,
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else None,
        "failures": {trial.number: trial.user_attrs.get("fail_reason", "") for trial in trials if trial.state == TrialState.FAIL},
    }
    path = sweep_dir / RESULTS_FILE
    _write_atomically(path, yaml.safe_dump(results, sort_keys=False))

    lines = [f"\nOptuna study '{study.study_name}': {_done(counts)} of {sweeper.n_trials} trials done ({_format_counts(counts)})"]
    if best is None:
        lines.append("No trial completed.")
    else:
        lines.append(f"Best trial {best.number}: {metric} = {best.value:.6g}")
        lines.append("  " + " ".join(_as_override(space, name, value) for name, value in best.params.items()))
    lines.append(f"Results: {path}\nStorage: {storage}")
    print("\n".join(lines), flush=True)


def _as_override(space: SearchSpace, name: str, value: Any) -> str:
    """``key=value`` as the search space writes it (a trial from an earlier search space: as recorded)."""
    dimension = next((d for d in space.dimensions if d.name == name), None)
    try:
        return dimension.override(value) if dimension else f"{name}={value}"
    except ValueError:  # not among this search space's choices
        return f"{name}={value}"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
