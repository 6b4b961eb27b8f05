"""Shared fixtures: compose the real configs with Hydra's compose API, as the app does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mfrec.app import CONFIG_DIR


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(*overrides)`` -> the composed train config, writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])

    return make
