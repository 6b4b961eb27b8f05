"""Runs that survive a kill: checkpoints renamed into place, and a clean stop on SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from mfrec.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file in the checkpoint's folder, then renames it over the target.

    A rename within one folder is atomic, so a process killed while saving leaves the previous
    ``last.ckpt`` intact (and at worst a stray ``.tmp`` file), never a truncated checkpoint. No
    fsync: the written pages outlive a killed process, and an fsync every epoch would cost more
    than a small model's epoch (it guards only against the machine itself going down).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(descriptor, "wb") as file:
                torch.save(checkpoint, file)
            os.chmod(temporary, 0o644)  # mkstemp makes it private; a checkpoint is a normal file
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class LastCheckpoint(pl.Callback):
    """``<dirpath>/last.ckpt``: the whole training state every ``every_n_epochs`` epochs and at the end.

    Written at the end of an epoch (after its validation), the one point from which a resumed run
    continues exactly as an uninterrupted one. The loggers are flushed first, so the curves on disk
    are never behind a checkpoint. Saving at the end of training too means a stop between two saves
    (max_epochs, early stopping, SIGTERM) never leaves a stale file.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1):
        if every_n_epochs < 1:
            raise ConfigError("callbacks.last_checkpoint.every_n_epochs", f"got {every_n_epochs}; valid: an integer >= 1")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_epochs = every_n_epochs
        self._saved_at_step: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saved_at_step != trainer.global_step:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            flush = getattr(logger.experiment, "flush", None)
            if flush is not None:
                flush()
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, to resume
        self._saved_at_step = trainer.global_step


class GracefulStop(pl.Callback):
    """SIGTERM (SLURM pre-emption, ``kill``) or Ctrl-C: finish the epoch, checkpoint it, then stop.

    The epoch's end is the safe point: ``last.ckpt`` is written there and a resumed run restarts
    at the next epoch with exactly the state an uninterrupted run would have. A second Ctrl-C
    stops at once (losing the current epoch, never more).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Installed here, after Lightning's own SIGTERM handler (which would stop mid-epoch): replaces it.
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        print(f"\nReceived {signal.Signals(signum).name}: stopping at the end of this epoch "
              "(Ctrl-C again to stop at once).", file=sys.stderr, flush=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            # DDP: a signal may reach some processes only (`kill` of one): all stop, or the others
            # would wait for it forever. Every process learns the signal (the highest, if several).
            received = torch.tensor(self.received or 0, device=pl_module.device)
            self.received = int(trainer.strategy.reduce(received, reduce_op="max")) or None
        if self.received is not None:
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
