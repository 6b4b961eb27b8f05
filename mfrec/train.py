"""mfrec-train: compose the config, build data, model and trainer, fit, test, and print the report."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from mfrec.app import CONFIG_DIR, run_command
from mfrec.checkpoint import read_checkpoint
from mfrec.checkpointing import GracefulStop
from mfrec.config import validate_config
from mfrec.data import RatingsDataModule
from mfrec.errors import ConfigError, Interrupted
from mfrec.recommend import format_metrics, format_report, rank_movies, resolve_users

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
        print(format_metrics(test_metrics, f"Test metrics ({'best' if best else 'final'} weights):"))
        metrics.update(test_metrics)

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
    if hydra_dir.is_dir():  # Hydra just wrote this invocation's config there; the run's is the stored one
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
    return cfg


def _raise_if_interrupted(trainer: pl.Trainer, cfg: DictConfig) -> None:
    stop = next((callback for callback in trainer.callbacks if isinstance(callback, GracefulStop)), None)
    if stop is None or stop.received is None:
        return
    run_dir = cfg.paths.output_dir
    raise Interrupted(
        f"stopped by {signal.Signals(stop.received).name} at the end of an epoch, after {trainer.global_step} "
        f"optimizer steps, all saved in {run_dir}/checkpoints/last.ckpt. Continue with: mfrec-train resume={run_dir}",
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
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
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
    return train(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg, resolve=True))
    # A failed resume must not remove the run directory it was pointed at.
    metrics = run_command("mfrec-train", lambda: _train_command(cfg), keep_run_dir=bool(cfg.get("resume")))
    run_dir = HydraConfig.get().runtime.output_dir
    print(f"\nRun directory: {run_dir}\nTensorBoard:   tensorboard --logdir {run_dir}")
    return metrics.get("val/rmse_best")


if __name__ == "__main__":
    main()
