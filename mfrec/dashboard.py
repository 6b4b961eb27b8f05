"""TensorBoard's HParams and Projector tabs for a finished run (config key ``dashboard``).

HParams: the run's hyper-parameters (model, optimizer, scheduler, data, epochs, seed) with its final
metrics, so that the HParams table and parallel-coordinates view compare the runs of a sweep.
Projector: the trained movie embeddings (user embeddings on request), labelled with titles and ids.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from mfrec.data import RatingsDataModule
from mfrec.module import MFModule
from mfrec.sweeps.naming import this_jobs_swept_keys

# Data settings that change what is learned (not batches_per_chunk or eval_batch_size: speed only).
DATA_HPARAMS = ("batch_size", "shuffle", "split", "val_fraction", "test_fraction", "fold", "leave_last_k")


def publish(cfg: DictConfig, trainer: pl.Trainer, model: MFModule, datamodule: RatingsDataModule, metrics: dict[str, float]) -> None:
    """Write what ``cfg.dashboard`` asks for into the run's TensorBoard logs (nothing without a TensorBoard logger)."""
    settings = cfg.get("dashboard")
    tensorboard = next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)
    if not settings or tensorboard is None:
        return
    projector, step = settings.projector, trainer.global_step
    ratings, train = datamodule.ratings, datamodule.train_ratings
    # A writer of its own: Lightning has closed the logger's at the end of fit and test.
    with SummaryWriter(tensorboard.log_dir) as writer:
        if settings.hparams:
            write_hparams(writer, run_hparams(cfg), final_metric_names(cfg, metrics), this_jobs_swept_keys())
        if projector.movies:
            add_embeddings(
                writer, "movie_embedding", model.model.movie_embedding.weight,
                labels={"title": ratings.movie_titles, "movie_id": ratings.movie_ids},
                ratings_count=torch.bincount(train.movies, minlength=ratings.num_movies),
                max_items=projector.max_items, step=step,
            )
        if projector.users:
            add_embeddings(
                writer, "user_embedding", model.model.user_embedding.weight,
                labels={"user_id": ratings.user_ids},
                ratings_count=torch.bincount(train.users, minlength=ratings.num_users),
                max_items=projector.max_items, step=step,
            )


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters of a run, flattened to ``group.key`` -> a number, bool or string.

    ``optimizer`` and ``scheduler`` hold the class name (``Adam``, ``none``) next to their arguments;
    ``data.source`` names the data: the MovieLens release, the CSV file name or the source class.
    """
    hparams: dict[str, Any] = {}
    for group in ("model", "optimizer", "scheduler"):
        node = OmegaConf.to_container(cfg[group], resolve=True) if cfg.get(group) else {}
        if group != "model":  # the model class is always MFModule
            hparams[group] = node["_target_"].rsplit(".", 1)[-1] if node else "none"
        hparams.update({f"{group}.{key}": _hparam_value(value) for key, value in node.items() if not key.startswith("_")})
    hparams["data.source"] = _source_name(cfg.data.source)
    for key in DATA_HPARAMS:
        if key in cfg.data:
            hparams[f"data.{key}"] = _hparam_value(cfg.data[key])
    hparams["trainer.max_epochs"] = cfg.trainer.max_epochs
    hparams["seed"] = cfg.seed
    return hparams


def final_metric_names(cfg: DictConfig, metrics: dict[str, float]) -> list[str]:
    """The metrics the HParams tab shows: val/rmse_best, test/rmse, test/ndcg@K for each K of metrics.ks.

    Those the run has; TensorBoard reads their values from the scalars logged: the last point of each.
    """
    names = ["val/rmse_best", "test/rmse", *(f"test/ndcg@{k}" for k in OmegaConf.select(cfg, "metrics.ks", default=[]))]
    return [name for name in names if name in metrics]


def write_hparams(writer: SummaryWriter, hparams: dict[str, Any], metric_names: list[str], swept: list[str]) -> None:
    """The HParams plugin's experiment, session start and session end summaries for this run.

    ``metric_names`` are the metric columns (no ``hp_metric`` is invented); values of None are left
    out (an empty cell). Hyper-parameters under a ``swept`` key are marked as differing between runs:
    TensorBoard shows those columns first (and five columns by default).
    """
    values = {name: value for name, value in hparams.items() if value is not None}
    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=name, type=_data_type(value), differs=any(name == key or name.startswith(f"{key}.") for key in swept))
            for name, value in values.items()
        ],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=name)) for name in metric_names],
    )
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in values.items():
        start.hparams[name].MergeFrom(_proto_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    writer.file_writer.add_summary(_hparams_summary(hparams_metadata.EXPERIMENT_TAG, experiment=experiment))
    writer.file_writer.add_summary(_hparams_summary(hparams_metadata.SESSION_START_INFO_TAG, session_start_info=start))
    writer.file_writer.add_summary(_hparams_summary(hparams_metadata.SESSION_END_INFO_TAG, session_end_info=end))


def add_embeddings(
    writer: SummaryWriter,
    tag: str,
    weight: torch.Tensor,
    labels: dict[str, list],
    ratings_count: torch.Tensor,
    max_items: int | None,
    step: int,
) -> None:
    """Embedding rows for the Projector tab, labelled by ``labels`` columns and the training-ratings count.

    With more than ``max_items`` rows only the most-rated ``max_items`` are written: the projector
    (and the browser showing it) slows down beyond some ten thousand points.
    """
    order = torch.argsort(ratings_count, descending=True, stable=True)
    keep = (order if max_items is None else order[:max_items]).sort().values
    header = [*labels, "ratings"]
    rows = [[_tsv_cell(labels[column][i]) for column in labels] + [int(ratings_count[i])] for i in keep.tolist()]
    writer.add_embedding(weight.detach().cpu()[keep], metadata=rows, metadata_header=header, tag=tag, global_step=step)


def _source_name(source: DictConfig) -> str:
    """The MovieLens release, the ratings file's name, or the source's class (DenseMatrix, Triples...)."""
    if source.get("release"):
        return str(source.release)
    if source.get("path"):
        return Path(str(source.path)).name
    return str(source._target_).rsplit(".", 1)[-1]


def _hparam_value(value: Any) -> Any:
    """Numbers, bools, strings and None as they are; lists and mappings as text, e.g. "[0.9, 0.999]"."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _data_type(value: bool | int | float | str) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    return api_pb2.DATA_TYPE_FLOAT64 if isinstance(value, (int, float)) else api_pb2.DATA_TYPE_STRING


def _proto_value(value: bool | int | float | str) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    return struct_pb2.Value(number_value=value) if isinstance(value, (int, float)) else struct_pb2.Value(string_value=value)


def _hparams_summary(tag: str, **plugin_data: Any) -> Summary:
    """A summary the HParams plugin reads (its own summary module needs TensorFlow)."""
    content = plugin_data_pb2.HParamsPluginData(version=hparams_metadata.PLUGIN_DATA_VERSION, **plugin_data)
    plugin = SummaryMetadata.PluginData(plugin_name=hparams_metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def _tsv_cell(value: Any) -> str:
    """A metadata.tsv cell: tabs and line breaks in a title would split it into extra columns or rows."""
    return " ".join(str(value).split())
