"""mfrec-train: compose the config, build data, model and trainer, fit, test, and print the report."""

from __future__ import annotations

import logging

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mfrec.app import CONFIG_DIR, run_command
from mfrec.config import validate_config
from mfrec.data import RatingsDataModule
from mfrec.recommend import format_metrics, format_report, rank_movies, resolve_users

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment and return its final metrics (``train/loss``, ``val/rmse_best``, ``test/rmse``...)."""
    validate_config(cfg)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, verbose=False)

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
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_callbacks(cfg, has_validation=datamodule.has_validation()),
        logger=[instantiate(logger) for logger in (cfg.get("logger") or {}).values()] or False,
    )

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_test():
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        test_metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("test/")}
        print(format_metrics(test_metrics, f"Test metrics ({'best' if best else 'last'} checkpoint):"))
        metrics.update(test_metrics)

    clip = tuple(ratings.rating_scale) if cfg.report.clip else None
    seen = datamodule.train_ratings if cfg.report.exclude_seen else None
    for raw_id, user in report_users:
        ranked = rank_movies(model.model, user, seen=seen, top_k=cfg.report.top_k, clip=clip)
        print(format_report(raw_id, ranked, ratings.movie_titles))
    return metrics


def _callbacks(cfg: DictConfig, has_validation: bool) -> list[pl.Callback]:
    callbacks = []
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        monitor = callback_cfg.get("monitor")
        if monitor and str(monitor).startswith("val/") and not has_validation:
            log.info("callbacks.%s skipped: it monitors %s and the data has no validation split", name, monitor)
            continue
        callbacks.append(instantiate(callback_cfg))
    return callbacks


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg, resolve=True))
    metrics = run_command("mfrec-train", lambda: train(cfg))
    run_dir = HydraConfig.get().runtime.output_dir
    print(f"\nRun directory: {run_dir}\nTensorBoard:   tensorboard --logdir {run_dir}")
    return metrics.get("val/rmse_best")


if __name__ == "__main__":
    main()
