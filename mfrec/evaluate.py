"""mfrec-eval: the test-split metrics of a saved model, as a table and as JSON in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mfrec.app import CONFIG_DIR, run_command
from mfrec.checkpoint import load_module
from mfrec.data import RatingsDataModule
from mfrec.errors import ConfigError
from mfrec.recommend import format_metrics


def evaluate(ckpt_path: str, output_dir: Path | None = None) -> dict[str, float]:
    """Rebuild the checkpoint's data and split from its stored config and score its test split."""
    module = load_module(ckpt_path)
    data_config = module.run_config.get("data")
    if not data_config:
        raise ConfigError("ckpt_path", f"{ckpt_path} stores no data config to rebuild the test split from")
    datamodule: RatingsDataModule = instantiate(OmegaConf.create(data_config))
    datamodule.prepare_data()
    datamodule.setup("test")
    if (datamodule.num_users, datamodule.num_movies) != (module.hparams.num_users, module.hparams.num_movies):
        raise ConfigError(
            "ckpt_path", f"the data now has {datamodule.num_users} users and {datamodule.num_movies} movies, the "
            f"checkpoint {module.hparams.num_users} and {module.hparams.num_movies}: the data changed since training",
        )
    if not datamodule.has_test():
        raise ConfigError("ckpt_path", "the checkpoint's data config has no test split (data.test_fraction=0)")
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("test/")}
    print(format_metrics(metrics, f"Test metrics of {ckpt_path}:"))
    if output_dir is not None:
        target = output_dir / "metrics.json"
        target.write_text(json.dumps({"ckpt_path": str(ckpt_path), "metrics": metrics}, indent=2))
        print(f"Written to {target}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_command("mfrec-eval", lambda: evaluate(cfg.ckpt_path, Path(HydraConfig.get().runtime.output_dir)))


if __name__ == "__main__":
    main()
