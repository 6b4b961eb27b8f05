"""Sweep job directories named after their overrides, which TensorBoard shows as the run names."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

# Longer names are cut (most file systems allow 255 bytes); the job number keeps them unique.
MAX_NAME_LENGTH = 160
_UNSAFE = re.compile(r"[^\w.,=+@~-]")


def job_dirname(job_num: int, overrides: Iterable[str], exclude_keys: Iterable[str] = ()) -> str:
    """``<job number>-<key=value,...>`` from the job's overrides, e.g. ``3-embedding_dim=16,lr=0.01``.

    Keys are shortened to their last component (``optimizer.lr`` -> ``lr``, ``data/source`` ->
    ``source``) unless two overrides would then share a name; ``+`` prefixes are dropped and
    ``exclude_keys`` (full keys) left out. Characters unsafe in a file name (``/``, spaces,
    brackets, quotes...) become ``_``. The job number, first, makes every name unique, also when
    two jobs have the same overrides, and is the same whichever launcher runs the job.
    """
    parsed = _parsed(overrides, exclude_keys)
    short = {key: re.split(r"[./]", key)[-1] for key, _, _ in parsed}
    uses = Counter(short.values())
    items = [
        ("~" if deleted else "") + (short[key] if uses[short[key]] == 1 else key) + assigned
        for key, deleted, assigned in parsed
    ]
    name = _UNSAFE.sub("_", ",".join(items))[:MAX_NAME_LENGTH]
    return f"{job_num}-{name}" if name else str(job_num)


def swept_keys(overrides: Iterable[str], exclude_keys: Iterable[str] = ()) -> list[str]:
    """The full keys of ``overrides`` (``model.embedding_dim``), less ``exclude_keys``: those a job name shows."""
    return [key for key, _, _ in _parsed(overrides, exclude_keys)]


def this_jobs_swept_keys() -> list[str]:
    """In a job of a ``-m`` sweep, the config keys that vary between its jobs; elsewhere none."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hydra_cfg = HydraConfig.get()
    return swept_keys(hydra_cfg.overrides.task, hydra_cfg.job.config.override_dirname.exclude_keys)


def _parsed(overrides: Iterable[str], exclude_keys: Iterable[str]) -> list[tuple[str, bool, str]]:
    """(full key, is a deletion ``~key``, ``=value`` or "") for each override whose key is not excluded."""
    excluded = set(exclude_keys)
    parsed = []
    for override in overrides:
        key, equals, value = str(override).partition("=")
        full_key = key.lstrip("+~").split("@")[0]
        if full_key not in excluded:
            parsed.append((full_key, key.startswith("~"), f"{equals}{value}"))
    return parsed


class SharedOverridesOutOfNames(Callback):
    """Leaves the overrides that every job of a sweep shares out of the job directory names.

    ``mfrec-train -m model.embedding_dim=8,16 trainer.max_epochs=5`` names its jobs
    ``0-embedding_dim=8`` and ``1-embedding_dim=16``: ``trainer.max_epochs``, the same in both, is
    added to Hydra's ``hydra.job.config.override_dirname.exclude_keys`` when the sweep starts. Each
    job's config is composed again from the sweep's hydra overrides, so it sees the addition
    (also in multirun.yaml and each job's .hydra/hydra.yaml).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        shared = [override.key_or_group for override in overrides if not override.is_sweep_override()]
        if shared:
            excluded = dict.fromkeys([*config.hydra.job.config.override_dirname.exclude_keys, *shared])
            config.hydra.overrides.hydra.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(excluded)}]")
