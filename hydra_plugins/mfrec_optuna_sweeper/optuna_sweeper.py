"""mfrec's Optuna sweeper (``hydra/sweeper=mfrec_optuna``), a Hydra plugin on Optuna >= 4.

Hydra imports this module on every run to find its plugins, so Optuna is imported only once a sweep
starts (in ``_study``).
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mfrec.errors import MfrecError


class OptunaSweeper(Sweeper):
    """Asks Optuna for trials, runs each as a job of the configured launcher, tells Optuna the outcome.

    The settings are documented in ``config.py`` (OptunaSweeperConf).
    """

    def __init__(
        self,
        study_name: str | None,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: DictConfig,
        pruner: DictConfig,
        report_metric: str,
        params: DictConfig,
        enqueue_trials: list[DictConfig],
    ) -> None:
        self.study_name = study_name
        self.storage = storage
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.pruner = pruner
        self.report_metric = report_metric
        self.params = params
        self.enqueue_trials = enqueue_trials
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        try:
            from hydra_plugins.mfrec_optuna_sweeper._study import run_study
        except ModuleNotFoundError as missing:  # optuna comes with the sweep extra
            print(f"mfrec-train: error: hparams_search needs {missing.name}: pip install -e \".[sweep]\"", file=sys.stderr)
            sys.exit(1)

        try:
            run_study(self, arguments)
        except MfrecError as error:  # as mfrec.app.run_command reports a single run's errors
            print(f"mfrec-train: error: {error}", file=sys.stderr)
            sys.exit(getattr(error, "exit_code", 1))
        except KeyboardInterrupt:
            print("\nmfrec-train: stopped by Ctrl-C. Run the same command again to continue the study.", file=sys.stderr)
            sys.exit(130)
