"""Start-up checks of a composed config: unknown keys and out-of-range values stop a run before training."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from mfrec.errors import ConfigError

TOP_LEVEL_KEYS = {
    "task_name", "seed", "threads", "train", "test", "ckpt_path", "resume", "print_config", "report", "metrics",
    "optimized_metric", "optuna_trial",
    "data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "dashboard",
}
REPORT_KEYS = {"users", "top_k", "exclude_seen", "clip"}
# Filled in by mfrec-train from the data and the other groups, never by the model config.
MODEL_ARGS_FROM_DATA = {"num_users", "num_movies", "global_mean", "rating_scale", "optimizer", "scheduler", "ranking"}
METRICS_KEYS = {"ks", "relevance_threshold", "max_users", "chunk_size"}
DASHBOARD_KEYS = {"hparams", "projector"}
PROJECTOR_KEYS = {"movies", "users", "max_items"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


RANGE_CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("model.embedding_dim", _positive_int, "an integer >= 1"),
    ("model.l2", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("model.bias_l2", lambda v: v is None or (_is_number(v) and v >= 0), "null (same as model.l2) or a number >= 0"),
    ("model.l2_count_exponent", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("model.init_std", lambda v: v is None or (_is_number(v) and v > 0), "null (nn.Embedding's N(0, 1)) or a number > 0"),
    ("model.sparse", lambda v: isinstance(v, bool), "true or false"),
    ("model.fused_sgd", lambda v: isinstance(v, bool), "true or false"),
    ("model.compile", lambda v: isinstance(v, bool), "true or false"),
    ("model.loss_reduction", lambda v: v in ("mean", "sum"), "mean or sum"),
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "a number > 0, e.g. 0.01"),
    ("data.batch_size", _positive_int, "an integer >= 1"),
    ("data.eval_batch_size", _positive_int, "an integer >= 1"),
    ("data.batches_per_chunk", _positive_int, "an integer >= 1"),
    ("data.val_fraction", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.test_fraction", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.leave_last_k", lambda v: v is None or _positive_int(v), "null or an integer >= 1"),
    ("data.shuffle", lambda v: isinstance(v, bool), "true or false"),
    ("trainer.max_epochs", _positive_int, "an integer >= 1"),
    # Batches are stepped in chunks inside one training_step (mfrec.module), exact for 32-bit training.
    ("trainer.precision", lambda v: v in (None, 32, "32", "32-true"), "32 (mfrec trains in 32-bit)"),
    ("optimized_metric", lambda v: isinstance(v, str) and v != "", "a logged metric's name, e.g. val/rmse_best"),
    ("trainer.num_nodes", _positive_int, "an integer >= 1"),
    ("threads", lambda v: v is None or _positive_int(v), "null (torch's default: one per core) or an integer >= 1"),
    ("seed", lambda v: v is None or (_is_int(v) and 0 <= v < 2**32), "null or an integer in [0, 2**32)"),
    ("report.top_k", lambda v: v is None or _positive_int(v), "null (all movies) or an integer >= 1"),
    ("report.users", lambda v: isinstance(v, (list, ListConfig)), "a list of user ids, e.g. [0, 2]"),
    ("metrics.ks", lambda v: isinstance(v, (list, ListConfig)) and all(_positive_int(k) for k in v), "a list of integers >= 1, e.g. [10] or [5, 10, 20]"),
    ("metrics.relevance_threshold", _is_number, "a rating, e.g. 4.0"),
    ("metrics.max_users", lambda v: v is None or _positive_int(v), "null (all users) or an integer >= 1"),
    ("metrics.chunk_size", _positive_int, "an integer >= 1"),
    ("dashboard.hparams", lambda v: isinstance(v, bool), "true or false"),
    ("dashboard.projector.movies", lambda v: isinstance(v, bool), "true or false"),
    ("dashboard.projector.users", lambda v: isinstance(v, bool), "true or false"),
    ("dashboard.projector.max_items", lambda v: v is None or _positive_int(v), "null (all) or an integer >= 1"),
]


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key that is missing, unknown or out of range."""
    for key in sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(key, "is required (it is ??? in the config): give it on the command line, e.g. key=value")
    _check_known_keys(cfg, "", TOP_LEVEL_KEYS)
    _check_known_keys(cfg.get("report") or {}, "report.", REPORT_KEYS)
    _check_known_keys(cfg.get("metrics") or {}, "metrics.", METRICS_KEYS)
    _check_known_keys(cfg.get("dashboard") or {}, "dashboard.", DASHBOARD_KEYS)
    _check_known_keys(OmegaConf.select(cfg, "dashboard.projector") or {}, "dashboard.projector.", PROJECTOR_KEYS)
    for key in sorted(set(cfg.get("model") or {}) & MODEL_ARGS_FROM_DATA):
        raise ConfigError(f"model.{key}", "is set by mfrec-train from the data and the optimizer/scheduler groups; remove it")
    for path, node in _target_nodes(cfg):
        _check_target_arguments(path, node)
    for key, is_valid, valid in RANGE_CHECKS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if not is_valid(value):
            raise ConfigError(key, f"got {value!r}; valid: {valid}")
    _check_devices(cfg)
    _check_speed_options(cfg)


_ABSENT = object()


def _check_devices(cfg: DictConfig) -> None:
    """Several devices or nodes need trainer=ddp: its steps average the processes' gradients."""
    trainer = cfg.get("trainer") or {}
    devices, num_nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if trainer.get("strategy") != "ddp":
        if not (devices in (1, "1", None) or devices == [0]):
            raise ConfigError("trainer.devices", f"got {devices!r}; valid: 1, or several with trainer=ddp (e.g. trainer=ddp trainer.devices=2)")
        if num_nodes != 1:
            raise ConfigError("trainer.num_nodes", f"got {num_nodes!r}; valid: 1, or several with trainer=ddp")
        return
    device_ids = isinstance(devices, (list, ListConfig)) and len(devices) > 0 and all(_is_int(d) and d >= 0 for d in devices)
    if not (_positive_int(devices) or devices in ("auto", -1) or device_ids):
        raise ConfigError("trainer.devices", f"got {devices!r}; valid: auto, -1 (all), a number >= 1 or a list of device ids, e.g. [0, 1]")
    if OmegaConf.select(cfg, "model.sparse", default=False):
        raise ConfigError("model.sparse", "DDP averages dense gradients only; use model.sparse=false with trainer=ddp")


def _check_speed_options(cfg: DictConfig) -> None:
    """The speed options and the optimizer must fit together: say so before the data is loaded."""
    model, optimizer = cfg.get("model"), cfg.get("optimizer")
    if not model or not optimizer:
        return
    from mfrec.module import check_speed_options

    check_speed_options(
        OmegaConf.to_container(optimizer, resolve=True), sparse=bool(model.get("sparse", False)),
        fused_sgd=bool(model.get("fused_sgd", False)), compile=bool(model.get("compile", False)),
    )


def _check_known_keys(node: Any, prefix: str, known: set[str]) -> None:
    for key in node:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown key; valid keys here: {', '.join(sorted(known))}")


def _target_nodes(node: Any, path: str = "") -> list[tuple[str, DictConfig]]:
    """Every config node that names a ``_target_`` to instantiate, with its dotted path."""
    found = []
    if isinstance(node, DictConfig):
        if "_target_" in node:
            found.append((path, node))
        for key in node:
            found += _target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    return found


def _check_target_arguments(path: str, node: DictConfig) -> None:
    """Each key of a ``_target_`` node must be an argument its target accepts."""
    target = node._target_
    try:
        target_object = get_object(target)
    except Exception as error:  # Hydra raises its own ImportError flavours
        raise ConfigError(f"{path}._target_", f"cannot import '{target}': {error}") from None
    try:
        parameters = inspect.signature(target_object).parameters.values()
    except (TypeError, ValueError):
        return  # builtins without a signature: nothing to check
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters}
    for key in node:
        if not str(key).startswith("_") and key not in accepted:
            raise ConfigError(
                f"{path}.{key}",
                f"unknown key: {target} accepts {', '.join(sorted(accepted - MODEL_ARGS_FROM_DATA - {'self', 'params'}))}",
            )
