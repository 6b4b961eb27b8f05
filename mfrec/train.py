"""mfrec-train: compose the config, build data, model and trainer, fit, test, and print the report."""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mfrec.config import validate_config
from mfrec.data import RatingsDataModule
from mfrec.errors import ConfigError, DataError, MfrecError
from mfrec.recommend import format_report, rank_movies

log = logging.getLogger(__name__)


class _DropAdverts(logging.Filter):
    """Lightning logs a product tip on every Trainer start; it is noise in an experiment's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud logging" not in record.getMessage()

# The top-level configs/ of the source tree (mfrec is installed with `pip install -e .`). An absolute
# path, because Hydra resolves a relative one against the module path when run as a console script.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one experiment and return its final metrics (``train/loss``, ``val/rmse_best``, ``test/rmse``...)."""
    validate_config(cfg)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, verbose=False)

    datamodule: RatingsDataModule = instantiate(cfg.data)
    datamodule.setup("fit")  # the model's size comes from the data
    report_users = _report_users(cfg, datamodule)
    ratings = datamodule.ratings
    model = instantiate(
        cfg.model,
        num_users=ratings.num_users,
        num_movies=ratings.num_movies,
        global_mean=datamodule.global_mean,
        rating_scale=list(ratings.rating_scale),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        _recursive_=False,
    )
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
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})

    clip = tuple(ratings.rating_scale) if cfg.report.clip else None
    seen = datamodule.train_ratings if cfg.report.exclude_seen else None
    for raw_id, user in report_users:
        ranked = rank_movies(model.model, user, seen=seen, top_k=cfg.report.top_k, clip=clip)
        print(format_report(raw_id, ranked, ratings.movie_titles))
    return metrics


def _report_users(cfg: DictConfig, datamodule: RatingsDataModule) -> list[tuple[object, int]]:
    """(raw id, index) of each user in ``report.users``, checked before any training happens."""
    ratings = datamodule.ratings
    found = []
    for raw_id in cfg.report.users:
        try:
            found.append((raw_id, ratings.user_index(raw_id)))
        except KeyError:
            ids = ratings.user_ids
            valid = f"{ids[0]}..{ids[-1]}" if ids == list(range(len(ids))) else f"one of the {len(ids)} user ids in the data"
            raise ConfigError("report.users", f"user {raw_id!r} is not in the data; valid: {valid}") from None
    return found


def _callbacks(cfg: DictConfig, has_validation: bool) -> list[pl.Callback]:
    callbacks = []
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        monitor = callback_cfg.get("monitor")
        if monitor and str(monitor).startswith("val/") and not has_validation:
            log.info("callbacks.%s skipped: it monitors %s and the data has no validation split", name, monitor)
            continue
        callbacks.append(instantiate(callback_cfg))
    return callbacks


def _discard_unused_run_dir() -> None:
    """Remove the run directory Hydra made if the run stopped before writing anything of its own."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    own_files = [p for p in run_dir.iterdir() if p.name != ".hydra" and p.suffix != ".log"]
    if not own_files:
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Lightning 2.6 on torch 2.13 warns about its own use of a deprecated torch API.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Without a validation split Lightning warns that the (empty) validation loader is empty.
    warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdverts())
    if cfg.get("print_config"):
        print(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        metrics = train(cfg)
    except MfrecError as error:
        if isinstance(error, (ConfigError, DataError)):
            _discard_unused_run_dir()
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        print(f"mfrec-train: error: {error}", file=sys.stderr)
        sys.exit(1)
    run_dir = HydraConfig.get().runtime.output_dir
    print(f"\nRun directory: {run_dir}\nTensorBoard:   tensorboard --logdir {run_dir}")
    return metrics.get("val/rmse_best")


if __name__ == "__main__":
    main()
