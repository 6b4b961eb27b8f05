"""A trial of an Optuna study, seen from inside its run: report the validation metric, stop when pruned.

mfrec's Optuna sweeper gives each trial's run ``optuna_trial={_target_: mfrec.pruning.OptunaPruning, ...}``
(see configs/train.yaml); mfrec-train adds it to the run's callbacks.
"""

from __future__ import annotations

import logging

import optuna
import pytorch_lightning as pl

from mfrec.errors import ConfigError

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """After each validation epoch: report ``monitor`` to the trial, raise ``optuna.TrialPruned`` if the pruner says so."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_number: int,
        monitor: str = "val/rmse",
        pruner: optuna.pruners.BasePruner | None = None,
    ):
        self.monitor = monitor
        self._storage = optuna.storages.get_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=self._storage, pruner=pruner)
        study_id = self._storage.get_study_id_from_name(study_name)
        self._trial_id = self._storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        self.trial: optuna.trial.Trial | None = optuna.trial.Trial(study, self._trial_id)
        self._label = f"trial {trial_number} of study '{study_name}'"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = self._storage.get_trial(self._trial_id).state
        if state.is_finished():  # e.g. `mfrec-train resume=<a trial's run directory>`
            log.info("%s is already finished (%s): nothing is reported to it", self._label, state.name)
            self.trial = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        prune, value = False, None
        if trainer.is_global_zero:
            if self.monitor not in trainer.callback_metrics:
                logged = ", ".join(sorted(name for name in trainer.callback_metrics if name.startswith("val/")))
                raise ConfigError("hydra.sweeper.report_metric", f"'{self.monitor}' is not logged by validation; logged: {logged}")
            value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(value, step=trainer.current_epoch)
            prune = self.trial.should_prune()
        # Every process of a multi-device run stops together, on the first one's decision.
        if trainer.strategy.broadcast(prune):
            where = f"after epoch {trainer.current_epoch}"
            raise optuna.TrialPruned(f"{where}: {self.monitor} = {value:.6g}" if value is not None else where)
