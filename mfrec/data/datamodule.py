"""RatingsDataModule: loads a ratings source once, splits it, and serves (user, movie, rating) batches."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from mfrec.data.loader import Batch, TripleLoader
from mfrec.data.ratings import Ratings
from mfrec.data.splits import random_split
from mfrec.errors import ConfigError

SPLITS = {"random": random_split}


class RatingsDataModule(pl.LightningDataModule):
    """Observed ratings from ``source`` (anything with ``load() -> Ratings``), split into train/val/test.

    Training batches follow the source's order unless ``shuffle``; with ``batch_size=1`` and no
    shuffling that is the seed's loop, one optimizer step per observed rating.
    """

    def __init__(
        self,
        source,
        batch_size: int = 1024,
        shuffle: bool = True,
        split: str = "random",
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        batches_per_chunk: int = 64,
        eval_batch_size: int = 65536,
        seed: int = 0,
    ):
        super().__init__()
        if split not in SPLITS:
            raise ConfigError("data.split", f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        self.source = source
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.split = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batches_per_chunk = batches_per_chunk
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.ratings: Ratings | None = None
        self.train_ratings: Ratings | None = None
        self.val_ratings: Ratings | None = None
        self.test_ratings: Ratings | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.ratings is not None:  # load and split once, whatever the stage
            return
        self.ratings = self.source.load()
        self.train_ratings, self.val_ratings, self.test_ratings = SPLITS[self.split](
            self.ratings, self.val_fraction, self.test_fraction, self.seed
        )

    @property
    def num_users(self) -> int:
        return self._loaded().num_users

    @property
    def num_movies(self) -> int:
        return self._loaded().num_movies

    @property
    def global_mean(self) -> float:
        """Mean training rating: the starting point of biased MF's predictions."""
        self._loaded()
        return float(self.train_ratings.ratings.mean())

    def has_validation(self) -> bool:
        self._loaded()
        return len(self.val_ratings) > 0

    def has_test(self) -> bool:
        self._loaded()
        return len(self.test_ratings) > 0

    def train_dataloader(self) -> TripleLoader:
        return self._loader(self.train_ratings, self.batch_size, self.shuffle, self.batches_per_chunk)

    def val_dataloader(self) -> TripleLoader | list:
        return self._loader(self.val_ratings, self.eval_batch_size, False, 1) if self.has_validation() else []

    def test_dataloader(self) -> TripleLoader | list:
        return self._loader(self.test_ratings, self.eval_batch_size, False, 1) if self.has_test() else []

    def transfer_batch_to_device(self, batch: list[Batch], device: torch.device, dataloader_idx: int) -> list[Batch]:
        # A chunk is a flat list of tensor triples: moving them directly skips Lightning's generic
        # collection walk, which costs more than a small SGD step. Tensors already there are kept.
        return [tuple(tensor.to(device, non_blocking=True) for tensor in batch_tensors) for batch_tensors in batch]

    def _loader(self, part: Ratings | None, batch_size: int, shuffle: bool, batches_per_chunk: int) -> TripleLoader:
        if part is None:
            raise RuntimeError("RatingsDataModule.setup() must run before its data is used")
        return TripleLoader(
            part.users, part.movies, part.ratings, batch_size, shuffle=shuffle, seed=self.seed,
            batches_per_chunk=batches_per_chunk,
        )

    def _loaded(self) -> Ratings:
        if self.ratings is None:
            raise RuntimeError("RatingsDataModule.setup() must run before its data is used")
        return self.ratings
