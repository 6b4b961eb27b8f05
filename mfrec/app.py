"""What every mfrec command does around its work: errors as one clear line and a non-zero exit."""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import OmegaConf

from mfrec.errors import ConfigError, DataError, MfrecError
from mfrec.run_result import RESULT_FILE
from mfrec.sweeps.naming import job_dirname

# The top-level configs/ of the source tree (mfrec is installed with `pip install -e .`). An absolute
# path, because Hydra resolves a relative one against the module path when run as a console script.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")

Result = TypeVar("Result")

# hydra/default.yaml: `mfrec-train resume=<run dir>` continues in that directory instead of a new one.
OmegaConf.register_new_resolver("mfrec.run_dir", lambda resume, fresh: resume or fresh, replace=True)
# hydra/default.yaml: sweep job directories named after their overrides.
OmegaConf.register_new_resolver("mfrec.job_dirname", job_dirname, replace=True)


class _DropAdverts(logging.Filter):
    """Lightning logs a product tip on every Trainer start; it is noise in an experiment's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud logging" not in record.getMessage()


def quiet_library_noise() -> None:
    # Lightning 2.6 on torch 2.13 warns about its own use of a deprecated torch API.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Without a validation split Lightning warns that the (empty) validation loader is empty.
    warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdverts())


def run_command(command: str, work: Callable[[], Result], keep_run_dir: bool = False) -> Result:
    """Run ``work``; an MfrecError becomes ``<command>: error: ...`` on stderr and a non-zero exit.

    Config and data errors stop a run before it writes anything, so the run directory Hydra made
    for it is removed again (unless ``keep_run_dir``). In a multirun the error is re-raised for the
    caller to report (see ``mfrec.train.main``) and the job's directory is kept: the sweep lists it.
    """
    quiet_library_noise()
    try:
        try:
            return work()
        except InstantiationException as wrapped:  # Hydra wraps what a config's _target_ raised
            if isinstance(wrapped.__cause__, MfrecError):
                raise wrapped.__cause__ from None
            raise
    except MfrecError as error:
        if in_multirun():
            raise
        if isinstance(error, (ConfigError, DataError)) and not keep_run_dir:
            _discard_unused_run_dir()
        print(f"{command}: error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 1))


def override_argument(key: str, value: str) -> str:
    """``key=value`` as a shell argument that Hydra reads back as ``value``.

    Hydra refuses an unquoted value holding ``=`` or ``,`` (as sweep job directory names do), e.g.
    ``'resume=outputs/train/multiruns/<time>/3-embedding_dim=16,lr=0.01'`` must be given as
    ``"resume='outputs/train/multiruns/<time>/3-embedding_dim=16,lr=0.01'"``.
    """
    if re.fullmatch(r"[\w./-]+", value):
        return f"{key}={value}"
    if re.fullmatch(r"[^'\"$`\\!]+", value):  # the usual case, kept readable
        return f"\"{key}='{value}'\""
    return shlex.quote(f"{key}='{value}'" if "'" not in value else f'{key}="{value}"')


def in_multirun() -> bool:
    """True inside a job of a ``-m`` sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _discard_unused_run_dir() -> None:
    """Remove this run's directory if it holds nothing but Hydra's own files and the failed result.json."""
    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.is_dir() and all(p.name in (".hydra", RESULT_FILE) or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
