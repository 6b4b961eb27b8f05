"""MFModule: the LightningModule that trains MatrixFactorization with MSE loss and logs its metrics."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MinMetric

from mfrec.data.datamodule import RatingsDataModule
from mfrec.data.loader import Batch
from mfrec.errors import ConfigError, DivergenceError
from mfrec.fused import sgd_step
from mfrec.metrics import ranking_metrics
from mfrec.model import MatrixFactorization

SEED_OPTIMIZER = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}
DEFAULT_RANKING = {"ks": [10], "relevance_threshold": 4.0, "max_users": 10000, "chunk_size": 1024}
LOSS_REDUCTIONS = ("mean", "sum")
# Optimizers that take sparse gradients (model.sparse=true), as their config groups are named.
SPARSE_OPTIMIZERS = {torch.optim.SGD: "sgd", torch.optim.SparseAdam: "sparse_adam", torch.optim.Adagrad: "adagrad"}


class MFModule(pl.LightningModule):
    """Matrix factorization trained one optimizer step per batch.

    Every argument is a plain number or dict, saved as a hyper-parameter, so
    ``MFModule.load_from_checkpoint(path)`` rebuilds the module without extra arguments.
    ``optimizer`` and ``scheduler`` are Hydra configs with ``_partial_: true``; the module binds
    its own parameters to them.

    Optimization is manual because batches arrive in chunks (see ``mfrec.data.loader``): each
    ``training_step`` call takes one optimizer step per batch of its chunk, the same arithmetic as
    one call per batch. Inside a chunk the steps skip Lightning's per-step strategy, precision and
    callback hooks (``manual_backward``, ``LightningOptimizer.step``), which cost more than a small
    MF step; this is exact for 32-bit training on one device. On several devices (DDP) every step
    goes through those hooks, which average the gradients over the processes.

    Speed options: ``sparse`` (sparse embedding gradients, for SGD, SparseAdam or Adagrad: a step
    costs in proportion to the batch, not the catalogue), ``fused_sgd`` (plain SGD applied by
    ``mfrec.fused`` without autograd: the same step, faster; one process only), ``compile``
    (``torch.compile`` the per-batch step) and ``loss_reduction`` (``sum`` makes ``lr`` a per-rating
    step size, as in Surprise's SGD, whatever the batch size; ``mean``, the seed's, divides it by
    the batch size).
    """

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        embedding_dim: int = 32,
        use_biases: bool = False,
        init_std: float | None = None,
        global_mean: float = 0.0,
        l2: float = 0.0,
        bias_l2: float | None = None,
        l2_count_exponent: float = 0.0,
        rating_scale: tuple[float, float] | None = None,
        clip_predictions: bool = False,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        ranking: dict | None = None,
        sparse: bool = False,
        fused_sgd: bool = False,
        compile: bool = False,
        loss_reduction: str = "mean",
    ):
        super().__init__()
        optimizer = _plain(optimizer) or dict(SEED_OPTIMIZER)
        check_speed_options(optimizer, sparse=sparse, fused_sgd=fused_sgd, compile=compile)
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ConfigError("model.loss_reduction", f"got {loss_reduction!r}; valid: {', '.join(LOSS_REDUCTIONS)}")
        # The model first: no random number may be drawn before its embeddings (seed parity).
        self.model = MatrixFactorization(num_users, num_movies, embedding_dim, use_biases, init_std, global_mean, sparse)
        self.save_hyperparameters(
            {
                "num_users": num_users,
                "num_movies": num_movies,
                "embedding_dim": embedding_dim,
                "use_biases": use_biases,
                "init_std": init_std,
                "global_mean": global_mean,
                "l2": l2,
                "bias_l2": bias_l2,
                "l2_count_exponent": l2_count_exponent,
                "rating_scale": None if rating_scale is None else [float(v) for v in rating_scale],
                "clip_predictions": clip_predictions,
                "optimizer": optimizer,
                "scheduler": _plain(scheduler),
                "ranking": _plain(ranking) or dict(DEFAULT_RANKING),
                "sparse": sparse,
                "fused_sgd": fused_sgd,
                "compile": compile,
                "loss_reduction": loss_reduction,
            }
        )
        # What a checkpoint needs beyond the weights to speak raw ids and titles, and to rank
        # without the data: filled by `attach_data`, saved and restored with the checkpoint.
        self.data_info: dict[str, Any] = {}
        self.run_config: dict[str, Any] = {}  # the resolved config of the run that trained it
        self._held_out: list[Batch] = []
        self.automatic_optimization = False
        self.val_rmse = MeanSquaredError(squared=False)
        self.val_mae = MeanAbsoluteError()
        self.val_rmse_best = MinMetric()
        self.val_rmse_best.persistent(True)  # in checkpoints, so that a resumed run keeps its best
        self.test_rmse = MeanSquaredError(squared=False)
        self.test_mae = MeanAbsoluteError()

    def forward(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        return self.model(user, movie)

    def attach_data(self, datamodule: RatingsDataModule) -> None:
        """Record which users and movies were trained, the id maps, titles and training pairs."""
        ratings, train = datamodule.ratings, datamodule.train_ratings
        self.model.user_known.copy_(datamodule.known_users())
        self.model.movie_known.copy_(datamodule.known_movies())
        self.model.set_l2_count_weights(
            torch.bincount(train.users, minlength=ratings.num_users),
            torch.bincount(train.movies, minlength=ratings.num_movies),
            self.hparams.l2_count_exponent,
        )
        by_user = torch.argsort(train.users, stable=True)
        self.data_info = {
            "user_ids": list(ratings.user_ids),
            "movie_ids": list(ratings.movie_ids),
            "movie_titles": list(ratings.movie_titles),
            "rating_scale": [float(v) for v in ratings.rating_scale],
            # Training pairs, sorted by user: excluded from rankings ("seen" movies).
            "seen_users": train.users[by_user].to(torch.int32),
            "seen_movies": train.movies[by_user].to(torch.int32),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mfrec_data"] = self.data_info
        checkpoint["mfrec_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A module that was given its data and config (a run continuing from ckpt_path=) keeps its own.
        self.data_info = self.data_info or checkpoint.get("mfrec_data", {})
        self.run_config = self.run_config or checkpoint.get("mfrec_config", {})

    def seen_pairs(self, dtype: torch.dtype = torch.int64) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, movies) rated in training, sorted by user, on the model's device."""
        if "seen_users" not in self.data_info:
            empty = torch.zeros(0, dtype=dtype, device=self.device)
            return empty, empty
        return (
            self.data_info["seen_users"].to(self.device, dtype),
            self.data_info["seen_movies"].to(self.device, dtype),
        )

    def predict_ratings(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """Predicted ratings (with the cold-start fallback), clipped when ``clip_predictions`` is on."""
        prediction = self.model.predict(user, movie)
        if self.hparams.clip_predictions and self.hparams.rating_scale is not None:
            low, high = self.hparams.rating_scale
            prediction = prediction.clamp(low, high)
        return prediction

    def training_step(self, chunk: list[Batch], chunk_index: int) -> None:
        optimizer = self.optimizers()
        # The fused step updates the weights without gradients, which DDP could not average: several
        # processes take the autograd step, the same arithmetic.
        fused = self.hparams.fused_sgd and isinstance(self.trainer.strategy, SingleDeviceStrategy)
        train_batch = self._fused_sgd_batch if fused else self._autograd_batch
        losses = [train_batch(optimizer, user, movie, rating) for user, movie, rating in chunk]
        count = sum(len(rating) for _, _, rating in chunk)
        if self.hparams.loss_reduction == "mean":  # per-rating totals, whatever the batch sizes
            losses = [loss * len(rating) for loss, (_, _, rating) in zip(losses, chunk)]
        mean_loss = torch.stack(losses).sum() / count
        # Under DDP: the mean over all processes (each trains as many ratings), the same on every
        # process, so that all of them stop together on divergence. One device: mean_loss itself.
        mean_loss = self.trainer.strategy.reduce(mean_loss, reduce_op="mean")
        if not torch.isfinite(mean_loss):
            lr = optimizer.param_groups[0]["lr"]
            raise DivergenceError(
                f"training diverged in epoch {self.current_epoch}: the loss became {mean_loss.item()}. "
                f"Try a smaller learning rate than optimizer.lr={lr:g} (e.g. optimizer.lr={lr / 10:g})."
            )
        # Logged per chunk, as it happens (log_every_n_steps counts chunks): written before the
        # epoch's checkpoint, so a killed and resumed run's curve has no hole (an epoch-mean
        # metric would only be written after the checkpoint).
        self.log("train/loss", mean_loss, on_step=True, on_epoch=False, batch_size=count)

    @functools.cached_property
    def _batch_loss(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        # Made on first use, in the process that trains (a compiled function does not pickle).
        return torch.compile(self._eager_batch_loss) if self.hparams.compile else self._eager_batch_loss

    @property
    def _bias_l2(self) -> float:
        return self.hparams.l2 if self.hparams.bias_l2 is None else self.hparams.bias_l2

    def _eager_batch_loss(self, user: torch.Tensor, movie: torch.Tensor, rating: torch.Tensor) -> torch.Tensor:
        reduction = self.hparams.loss_reduction
        loss = F.mse_loss(self.model(user, movie), rating, reduction=reduction)
        if self.hparams.l2 or self._bias_l2:
            loss = loss + self.model.l2_penalty(user, movie, self.hparams.l2, self._bias_l2, reduction)
        return loss

    def _autograd_batch(
        self, optimizer: LightningOptimizer, user: torch.Tensor, movie: torch.Tensor, rating: torch.Tensor
    ) -> torch.Tensor:
        optimizer.zero_grad()
        loss = self._batch_loss(user, movie, rating)
        if isinstance(self.trainer.strategy, SingleDeviceStrategy):
            loss.backward()
            _counted_step(optimizer.optimizer.step, optimizer)
        else:
            # Lightning's own path: under DDP, manual_backward has the gradients averaged over the
            # processes at every backward pass, so every process takes the same step.
            self.manual_backward(loss)
            optimizer.step()
        return loss.detach()

    def _fused_sgd_batch(
        self, optimizer: LightningOptimizer, user: torch.Tensor, movie: torch.Tensor, rating: torch.Tensor
    ) -> torch.Tensor:
        # The optimizer holds the learning rate (schedulers change it) and counts the steps.
        lr = optimizer.param_groups[0]["lr"]
        return _counted_step(
            lambda: sgd_step(
                self.model, user, movie, rating, lr, self.hparams.l2, self._bias_l2,
                self.hparams.loss_reduction, self.hparams.compile,
            ),
            optimizer,
        )

    def on_fit_start(self) -> None:
        if self.hparams.sparse and self.trainer.world_size > 1:  # also for a Trainer built by hand
            raise ConfigError("model.sparse", "DDP averages dense gradients only; use model.sparse=false with several processes")

    def on_train_start(self) -> None:
        if self.trainer.ckpt_path is None:  # a resumed run keeps the best it restored
            self.val_rmse_best.reset()  # forget any sanity-check validation

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        with warnings.catch_warnings():
            # Fused SGD updates the weights without optimizer.step(), which the scheduler looks for.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`")
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitor = "val/rmse" if "val/rmse" in self.trainer.callback_metrics else "train/loss"
                scheduler.step(self.trainer.callback_metrics[monitor])
            else:
                scheduler.step()

    def validation_step(self, chunk: list[Batch], chunk_index: int) -> None:
        self._evaluate(chunk, self.val_rmse, self.val_mae)

    def on_validation_epoch_end(self) -> None:
        rmse = self.val_rmse.compute()
        self.val_rmse_best.update(rmse)
        metrics = {"val/rmse": rmse, "val/mae": self.val_mae.compute(), "val/rmse_best": self.val_rmse_best.compute()}
        # Every DDP process evaluates all of the data, so the values agree; sync_dist says so to Lightning.
        self.log_dict({**metrics, **self._ranking_metrics("val")}, sync_dist=True)
        self.val_rmse.reset()
        self.val_mae.reset()

    def test_step(self, chunk: list[Batch], chunk_index: int) -> None:
        self._evaluate(chunk, self.test_rmse, self.test_mae)

    def on_test_epoch_end(self) -> None:
        metrics = {"test/rmse": self.test_rmse.compute(), "test/mae": self.test_mae.compute()}
        self.log_dict({**metrics, **self._ranking_metrics("test")}, sync_dist=True)
        self.test_rmse.reset()
        self.test_mae.reset()

    def _evaluate(self, chunk: list[Batch], rmse: MeanSquaredError, mae: MeanAbsoluteError) -> None:
        for user, movie, rating in chunk:
            prediction = self.predict_ratings(user, movie)
            rmse.update(prediction, rating)
            mae.update(prediction, rating)
            self._held_out.append((user, movie, rating))

    @torch.no_grad()
    def _ranking_metrics(self, stage: str) -> dict[str, float]:
        """Full-ranking top-K metrics of the held-out ratings seen this epoch, excluding training movies."""
        held_out, self._held_out = self._held_out, []
        options = self.hparams.ranking or {}
        # A top-K list longer than the catalogue says nothing more (a toy matrix has 4 movies).
        ks = [k for k in options.get("ks", []) if k <= self.hparams.num_movies]
        if not ks or not held_out:
            return {}
        users, movies, ratings = (torch.cat(parts) for parts in zip(*held_out))
        # int32, as stored: ranking_metrics widens them a block at a time (at ML-25M's size, 320 MB less)
        seen_users, seen_movies = self.seen_pairs(torch.int32)
        metrics = ranking_metrics(
            # ranking_metrics hands over CPU user indices; the weights may be on a GPU
            lambda chunk: self.model.score_all(chunk.to(self.device)),
            self.hparams.num_movies, seen_users, seen_movies, users, movies, ratings,
            ks=ks, threshold=options.get("relevance_threshold", 4.0),
            chunk_size=options.get("chunk_size", 1024), max_users=options.get("max_users"),
        )
        metrics.pop("num_users", None)
        return {f"{stage}/{name}": float(value) for name, value in metrics.items()}

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _counted_step(step: Callable[[], Any], optimizer: LightningOptimizer) -> Any:
    """``step()``, counted in ``trainer.global_step`` as Lightning counts its optimizer's steps."""
    optimizer._on_before_step()
    result = step()
    optimizer._on_after_step()
    return result


def check_speed_options(optimizer: dict, sparse: bool = False, fused_sgd: bool = False, compile: bool = False) -> None:
    """Refuse speed options (see MFModule) that cannot work together or with the optimizer, naming the fix."""
    if compile and sparse and not fused_sgd:
        raise ConfigError(
            "model.compile", "torch.compile fails on sparse embedding gradients (model.sparse=true); "
            "model.fused_sgd=true compiles a step that touches only the batch's rows, or set model.sparse=false",
        )
    target = optimizer.get("_target_", "")
    try:
        optimizer_class = get_object(target)
    except Exception:
        return  # an unknown optimizer is reported by the config checks and by instantiate
    uses_weight_decay = bool(optimizer.get("weight_decay", 0))
    uses_momentum = bool(optimizer.get("momentum", 0) or optimizer.get("nesterov"))
    if fused_sgd:
        if optimizer_class is not torch.optim.SGD or uses_momentum or uses_weight_decay or optimizer.get("maximize"):
            raise ConfigError(
                "model.fused_sgd", f"applies plain SGD itself, so it needs optimizer=sgd with momentum=0 and "
                f"weight_decay=0 (regularise with model.l2); got {target} {_arguments(optimizer)}",
            )
        return
    if sparse and optimizer_class not in SPARSE_OPTIMIZERS:
        raise ConfigError(
            "model.sparse", f"{target} cannot take sparse gradients; use "
            f"{', '.join(f'optimizer={name}' for name in SPARSE_OPTIMIZERS.values())}, or model.sparse=false",
        )
    if sparse and (uses_weight_decay or uses_momentum):
        raise ConfigError(
            "model.sparse", f"weight_decay and momentum touch every row at every step, which undoes sparse "
            f"gradients: set them to 0 (regularise with model.l2); got {_arguments(optimizer)}",
        )
    if not sparse and isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.SparseAdam):
        raise ConfigError("model.sparse", f"{target} takes only sparse gradients: set model.sparse=true")


def _arguments(optimizer: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in optimizer.items() if not key.startswith("_"))


def _plain(config: Any) -> Any:
    """A DictConfig as plain dicts and lists, so that checkpoints hold no omegaconf objects."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config
