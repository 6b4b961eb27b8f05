"""mfrec-train: compose the config, build data, model and trainer, fit, test, and print the report."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from mfrec import dashboard
from mfrec.app import CONFIG_DIR, in_multirun, override_argument, run_command
from mfrec.checkpoint import read_checkpoint
from mfrec.checkpointing import GracefulStop
from mfrec.config import validate_config
from mfrec.data import RatingsDataModule
from mfrec.errors import ConfigError, Interrupted, MfrecError
from mfrec.recommend import format_metrics, format_report, rank_movies, resolve_users
from mfrec.run_result import is_pruned, read_result, recording_result

log = logging.getLogger(__name__)


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Run one experiment and return its final metrics (``train/loss``, ``val/rmse_best``, ``test/rmse``...).

    ``callbacks`` are added to the configured ones (a benchmark's clock, say).
    """
    if cfg.get("resume"):
        cfg = resumed_config(cfg.resume)
    validate_config(cfg)
    continued_from = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None  # clear errors now
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, verbose=False)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)

    datamodule: RatingsDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # the model's size comes from the data
    report_users = resolve_users(datamodule.ratings.user_ids, list(cfg.report.users), key="report.users")
    ratings = datamodule.ratings
    model = instantiate(
        cfg.model,
        num_users=ratings.num_users,
        num_movies=ratings.num_movies,
        global_mean=datamodule.global_mean,
        rating_scale=list(ratings.rating_scale),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        ranking=OmegaConf.to_container(cfg.metrics, resolve=True),
        _recursive_=False,
    )
    model.attach_data(datamodule)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = _callbacks(cfg, has_validation=datamodule.has_validation()) + list(callbacks)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=_loggers(cfg, continued_from) or False,
        # Lightning would add its own per-epoch checkpoint without a ModelCheckpoint among the
        # callbacks; mfrec writes last.ckpt itself (mfrec.checkpointing.LastCheckpoint).
        enable_checkpointing=any(isinstance(callback, ModelCheckpoint) for callback in callbacks),
    )
    _check_ddp_launch(trainer)

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        _raise_if_interrupted(trainer, cfg)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_test():
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # The best weights if this run found any, else the given checkpoint's when it trained nothing.
        tested = best or (None if cfg.train else cfg.get("ckpt_path"))
        trainer.test(model, datamodule=datamodule, ckpt_path=tested, verbose=False, weights_only=True)
        test_metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("test/")}
        if trainer.is_global_zero:
            print(format_metrics(test_metrics, f"Test metrics ({'best' if best else 'final'} weights):"))
        metrics.update(test_metrics)
    if not trainer.is_global_zero:  # DDP: the other processes hold the same weights; rank 0 reports
        return metrics
    dashboard.publish(cfg, trainer, model, datamodule, metrics)

    clip = tuple(ratings.rating_scale) if cfg.report.clip else None
    seen = datamodule.train_ratings if cfg.report.exclude_seen else None
    for raw_id, user in report_users:
        ranked = rank_movies(model.model, user, seen=seen, top_k=cfg.report.top_k, clip=clip)
        print(format_report(raw_id, ranked, ratings.movie_titles))
    return metrics


def resumed_config(run_dir: str) -> DictConfig:
    """The config a run was started with (stored in its last.ckpt), set to continue from that checkpoint."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError("resume", f"{run_dir} has no checkpoints/last.ckpt; give the directory of an mfrec-train run")
    stored = read_checkpoint(last, key="resume").get("mfrec_config")
    if not stored:
        raise ConfigError("resume", f"{last} does not store its run's config; continue it with ckpt_path={last} instead")
    cfg = OmegaConf.create(stored)
    if Path(cfg.paths.output_dir).resolve() != Path(run_dir).resolve():
        raise ConfigError("resume", f"{run_dir} was written as {cfg.paths.output_dir}; resume it at that path")
    cfg.ckpt_path, cfg.resume = str(last), None
    hydra_dir = Path(run_dir) / ".hydra"
    # Hydra just wrote this invocation's config there; the run's is the stored one (DDP: rank 0 writes).
    if hydra_dir.is_dir() and rank_zero_only.rank == 0:
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
    return cfg


def _check_ddp_launch(trainer: pl.Trainer) -> None:
    """Refuse a DDP run that Lightning would start by re-running a multirun's (-m) command line.

    Lightning starts the other processes of a node by re-running the command line in this run's
    directory, which is right for a single run only: each process would run the whole sweep.
    Under torchrun or SLURM, which start the processes themselves, a sweep's job may use DDP.
    """
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if trainer.num_devices == 1 or environment is None or environment.creates_processes_externally:
        return
    if in_multirun():
        raise ConfigError(
            "trainer.devices", f"got {trainer.num_devices} devices in a multirun (-m): Lightning starts DDP's other "
            "processes by re-running the command line, which would run the sweep again; run each job on its own, "
            "or start the processes with torchrun or SLURM",
        )


def _raise_if_interrupted(trainer: pl.Trainer, cfg: DictConfig) -> None:
    stop = next((callback for callback in trainer.callbacks if isinstance(callback, GracefulStop)), None)
    if stop is None or stop.received is None:
        return
    if not trainer.is_global_zero:
        # DDP: rank 0 reports the stop. The others leave quietly: Lightning's launcher takes a
        # non-zero exit of another process for a crash and kills rank 0, maybe before it reports.
        sys.exit(0)
    run_dir = cfg.paths.output_dir
    raise Interrupted(
        f"stopped by {signal.Signals(stop.received).name} at the end of an epoch, after {trainer.global_step} "
        f"optimizer steps, all saved in {run_dir}/checkpoints/last.ckpt. "
        f"Continue with: mfrec-train {override_argument('resume', str(run_dir))}",
        stop.received,
    )


def _loggers(cfg: DictConfig, continued_from: dict | None) -> list:
    """The configured loggers; continuing a checkpoint, TensorBoard is told where the run restarts.

    Points logged after that checkpoint by the interrupted run are replayed now; ``purge_step``
    makes TensorBoard show the replayed ones instead of both.
    """
    restart_step = None
    if continued_from is not None:
        fit_loop = continued_from.get("loops", {}).get("fit_loop", {})
        restart_step = fit_loop.get("epoch_loop.state_dict", {}).get("_batches_that_stepped")
    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        is_tensorboard = str(logger_cfg.get("_target_", "")).endswith("TensorBoardLogger")
        extra = {"purge_step": restart_step} if is_tensorboard and restart_step is not None else {}
        loggers.append(instantiate(logger_cfg, **extra))
    return loggers


def _callbacks(cfg: DictConfig, has_validation: bool) -> list[pl.Callback]:
    callbacks = []
    configs = dict(cfg.get("callbacks") or {})
    if cfg.get("optuna_trial"):  # a trial of mfrec's Optuna sweeper: reports to its study, may be pruned
        configs["optuna_trial"] = cfg.optuna_trial
    for name, callback_cfg in configs.items():
        monitor = callback_cfg.get("monitor")
        if monitor and str(monitor).startswith("val/") and not has_validation:
            log.info("callbacks.%s skipped: it monitors %s and the data has no validation split", name, monitor)
            continue
        callbacks.append(instantiate(callback_cfg))
    return callbacks


def _train_command(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("resume"):
        ignored = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "print_config="))]
        if ignored:
            raise ConfigError(
                "resume", f"continues a run with the config stored in it, so {' '.join(ignored)} would be ignored; "
                "to continue with changes give ckpt_path=<run dir>/checkpoints/last.ckpt and the overrides instead",
            )
    metrics = train(cfg)
    if cfg.get("optuna_trial"):  # a trial must return its metric: a misspelled name fails here, recorded as failed
        optimized_value(metrics, cfg.optimized_metric, required=True)
    return metrics


def optimized_value(metrics: dict[str, float], name: str, required: bool) -> float | None:
    """The metric a sweeper optimizes. An Optuna trial must have it: a misspelled name stops the study."""
    if name in metrics:
        return metrics[name]
    if required:
        raise ConfigError("optimized_metric", f"'{name}' was not logged by this run; logged metrics: {', '.join(sorted(metrics))}")
    return None


def _train_and_record(cfg: DictConfig) -> dict[str, float]:
    """``_train_command``, leaving result.json in the run directory however it ends (mfrec.run_result)."""
    if rank_zero_only.rank != 0:  # DDP: rank 0 speaks for the run
        return _train_command(cfg)
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    # The Optuna sweeper's bookkeeping (storage, study, trial number) is no part of what the run varies.
    overrides = [o for o in hydra_cfg.overrides.task if o.lstrip("+~").split("=", 1)[0] != "optuna_trial"]
    previous = read_result(run_dir) if cfg.get("resume") else None
    if previous is not None:  # a resumed run keeps the overrides it was started with, not resume=...
        overrides = previous.overrides
    return recording_result(run_dir, overrides, lambda: _train_command(cfg), record_startup_errors=in_multirun())


def _report_failed_sweep_job(error: Exception) -> None:
    """One line for an mfrec error, the traceback for anything else; the sweep goes on with its other jobs."""
    job = Path(HydraConfig.get().runtime.output_dir).name
    if isinstance(error, MfrecError):
        log.error("mfrec-train: error in sweep job %s: %s", job, error)
    else:
        log.exception("mfrec-train: sweep job %s failed", job)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """A single run, or one job of a ``-m`` sweep.

    A sweep job that fails is reported and returns None, so that the sweep runs its other jobs and
    ends with its summary, which lists the failure and exits non-zero (mfrec.sweeps.callback).
    """
    if cfg.get("print_config") and rank_zero_only.rank == 0:
        print(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        # A failed resume must not remove the run directory it was pointed at.
        metrics = run_command("mfrec-train", lambda: _train_and_record(cfg), keep_run_dir=bool(cfg.get("resume")))
    except Exception as error:
        # An Optuna trial's outcome (failed, pruned, or a config error that stops the study) is the
        # sweeper's to record.
        if not in_multirun() or is_pruned(error) or cfg.get("optuna_trial"):
            raise
        if isinstance(error, Interrupted):  # SIGTERM / Ctrl-C stops the whole sweep, not just this job
            print(f"mfrec-train: {error}", file=sys.stderr)
            sys.exit(error.exit_code)  # SystemExit passes Hydra's per-job error handling
        _report_failed_sweep_job(error)
        return None
    run_dir = HydraConfig.get().runtime.output_dir
    if rank_zero_only.rank == 0:  # the other processes of a DDP run say nothing
        print(f"\nRun directory: {run_dir}\nTensorBoard:   tensorboard --logdir {run_dir}")
    return optimized_value(metrics, cfg.optimized_metric, required=bool(cfg.get("optuna_trial")))


if __name__ == "__main__":
    main()
