"""The sweeper's settings, registered as ``hydra/sweeper=mfrec_optuna`` (a name of its own: it cannot clash
with the official hydra-optuna-sweeper). Imported by Hydra's plugin scan on every run, so no Optuna here."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mfrec_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler and pruner itself
    # The study's name in its storage: by default the hparams_search config's name.
    study_name: Optional[str] = "${hydra.runtime.choices.hparams_search}"
    # Any SQLAlchemy URL (e.g. postgresql://user@host/db, shared by workers on several machines);
    # null = sqlite:///<hydra.sweep.dir>/optuna.db.
    storage: Optional[str] = None
    direction: str = "minimize"  # or maximize: what to do with the value each trial returns (optimized_metric)
    # The study's total: a re-run of the same command runs only the trials still missing.
    n_trials: int = 20
    # Trials launched at once, in parallel with a parallel launcher (hydra/launcher=joblib).
    n_jobs: int = 1
    # Any Optuna sampler and pruner, by _target_ and arguments; pruner null = no pruning.
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    pruner: Any = field(default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner"})
    # Reported to the study after each validation epoch, for the pruner to compare trials: a metric
    # that improves in the study's direction.
    report_metric: str = "val/rmse"
    # The search space: config key -> Hydra sweep, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1)).
    params: Dict[str, Any] = field(default_factory=dict)
    # Parameters tried first, e.g. known-good defaults: [{optimizer.lr: 0.005}] (once per study).
    enqueue_trials: List[Dict[str, Any]] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="mfrec_optuna", node=OptunaSweeperConf, provider="mfrec")
