"""Loading mfrec checkpoints safely: tensors and plain values only, clear errors for anything else."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mfrec.errors import ConfigError
from mfrec.module import MFModule


def read_checkpoint(path: str | Path | None, key: str = "ckpt_path") -> dict[str, Any]:
    """The contents of an mfrec checkpoint, read with ``torch.load(weights_only=True)``.

    weights_only refuses any pickled object other than tensors and plain containers, so a hostile
    file cannot run code. ``key`` names the config key the path came from, for error messages.
    """
    if path is None:
        raise ConfigError(key, "is required: the path of a checkpoint, e.g. outputs/train/runs/<time>/checkpoints/last.ckpt")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(key, f"{path} is not a file; mfrec-train writes checkpoints to <run dir>/checkpoints/")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConfigError(key, f"{path} holds objects other than tensors and plain values, refused for safety ({_first_line(error)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise ConfigError(key, f"{path} is not a readable checkpoint (truncated or not a torch file): {_first_line(error)}") from None
    if not isinstance(checkpoint, dict) or "mfrec_data" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ConfigError(key, f"{path} is a torch file but not an mfrec checkpoint (written by mfrec-train)")
    return checkpoint


def load_module(path: str | Path | None, key: str = "ckpt_path") -> MFModule:
    """The MFModule saved at ``path`` (see ``read_checkpoint``), in eval mode."""
    checkpoint = read_checkpoint(path, key)
    try:
        module = MFModule(**checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError, KeyError) as error:
        raise ConfigError(key, f"{path} does not match this version of mfrec: {_first_line(error)}") from None
    module.on_load_checkpoint(checkpoint)
    module.eval()
    return module


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
