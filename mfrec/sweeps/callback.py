"""The end of every ``mfrec-train -m`` sweep: its summary table, and a non-zero exit when a job failed."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mfrec.sweeps.summary import SummaryError, failed_jobs, summarize


class SweepSummary(Callback):
    """Prints ``mfrec-sweep-summary <sweep dir>`` when a sweep ends (configs/train.yaml, hydra.callbacks).

    A failed sweep job is reported as it fails and the sweep goes on (mfrec.train.main); here the
    failures are counted and the command exits with status 1, so that scripts and CI notice.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        print()
        try:
            jobs = summarize(sweep_dir)
        except SummaryError as error:
            print(f"mfrec-train: no sweep summary: {error}", file=sys.stderr)
            return
        failed = failed_jobs(jobs)
        # An Optuna study records failed trials and goes on by design (its own report says so).
        is_study = "mfrec_optuna" in str(config.hydra.sweeper.get("_target_", ""))
        if failed and not is_study:
            print(f"mfrec-train: error: {len(failed)} of {len(jobs)} sweep jobs failed: "
                  f"{', '.join(job.name for job in failed)}", file=sys.stderr)
            sys.exit(1)
