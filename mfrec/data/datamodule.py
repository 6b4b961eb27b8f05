"""RatingsDataModule: loads a ratings source once, splits it, and serves (user, movie, rating) batches."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from mfrec.data.loader import Batch, TripleLoader
from mfrec.data.ratings import Ratings
from mfrec.data.splits import carve_validation, check_training_left, per_user_split, random_split, temporal_split
from mfrec.errors import ConfigError

log = logging.getLogger(__name__)
SPLITS = ("random", "per_user", "temporal", "predefined")


class RatingsDataModule(pl.LightningDataModule):
    """Observed ratings from ``source`` (anything with ``load() -> Ratings``), split into train/val/test.

    Training batches follow the source's order unless ``shuffle``; with ``batch_size=1`` and no
    shuffling that is the seed's loop, one optimizer step per observed rating.

    Splits: ``random`` and ``per_user`` hold out ``val_fraction`` / ``test_fraction``; ``temporal``
    holds out the latest ratings (or each user's last ``leave_last_k``); ``predefined`` takes the
    source's ``fold`` (e.g. ml-100k's u1-u5) and carves validation out of its training part.
    """

    def __init__(
        self,
        source,
        batch_size: int = 1024,
        shuffle: bool = True,
        split: str = "random",
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        fold: str | None = None,
        leave_last_k: int | None = None,
        batches_per_chunk: int = 64,
        eval_batch_size: int = 65536,
        seed: int | None = 0,
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
        self.fold = fold
        self.leave_last_k = leave_last_k
        self.batches_per_chunk = batches_per_chunk
        self.eval_batch_size = eval_batch_size
        self.seed = 0 if seed is None else seed
        self.ratings: Ratings | None = None
        self.train_ratings: Ratings | None = None
        self.val_ratings: Ratings | None = None
        self.test_ratings: Ratings | None = None

    def prepare_data(self) -> None:
        prepare = getattr(self.source, "prepare", None)
        if prepare is not None:  # e.g. download a MovieLens release on first use
            prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.ratings is not None:  # load and split once, whatever the stage
            return
        ratings = self.source.load()
        train, val, test = self._split(ratings)
        check_training_left(train)
        self.ratings = ratings
        self.train_ratings, self.val_ratings, self.test_ratings = (ratings.subset(i) for i in (train, val, test))
        self._report_cold_start()

    def _split(self, ratings: Ratings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.split == "random":
            return random_split(ratings, self.val_fraction, self.test_fraction, self.seed)
        if self.split == "per_user":
            return per_user_split(ratings, self.val_fraction, self.test_fraction, self.seed)
        if self.split == "temporal":
            return temporal_split(ratings, self.val_fraction, self.test_fraction, self.leave_last_k)
        fold_indices = getattr(self.source, "fold_indices", None)
        if fold_indices is None:
            raise ConfigError("data.split", "'predefined' needs a source with folds (data=ml-100k); use random, per_user or temporal")
        if self.fold is None:
            raise ConfigError("data.fold", "split=predefined needs a fold, e.g. data.fold=u1")
        train, test = fold_indices(ratings, self.fold)
        train, val = carve_validation(train, self.val_fraction, self.seed)
        return train, val, test

    def _report_cold_start(self) -> None:
        """Count users and movies met only in val/test: they get the fallback prediction."""
        known_users, known_movies = self.known_users(), self.known_movies()
        for name, part in (("validation", self.val_ratings), ("test", self.test_ratings)):
            if len(part) == 0:
                continue
            cold_users = int((~known_users[part.users.unique()]).sum())
            cold_movies = int((~known_movies[part.movies.unique()]).sum())
            if cold_users or cold_movies:
                log.warning(
                    "%s split: %d users and %d movies have no training ratings; their predictions fall back "
                    "to the global mean plus whatever biases are known", name, cold_users, cold_movies,
                )

    def known_users(self) -> torch.Tensor:
        """A mask over all users: True for those with at least one training rating."""
        return self._seen_mask(self._loaded().num_users, self.train_ratings.users)

    def known_movies(self) -> torch.Tensor:
        return self._seen_mask(self._loaded().num_movies, self.train_ratings.movies)

    @staticmethod
    def _seen_mask(size: int, index: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(size, dtype=torch.bool)
        mask[index] = True
        return mask

    @property
    def num_users(self) -> int:
        return self._loaded().num_users

    @property
    def num_movies(self) -> int:
        return self._loaded().num_movies

    @property
    def global_mean(self) -> float:
        """Mean training rating: the starting point of biased MF's predictions and the cold-start fallback."""
        self._loaded()
        return float(self.train_ratings.ratings.mean())

    def has_validation(self) -> bool:
        self._loaded()
        return len(self.val_ratings) > 0

    def has_test(self) -> bool:
        self._loaded()
        return len(self.test_ratings) > 0

    def train_dataloader(self) -> TripleLoader:
        # Under DDP each process trains on its own shard of every epoch's order (mfrec.data.loader.shard).
        # Validation and test are not sharded: every process evaluates all of them (see MFModule).
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return self._loader(self.train_ratings, self.batch_size, self.shuffle, self.batches_per_chunk, rank, world_size)

    def val_dataloader(self) -> TripleLoader | list:
        return self._loader(self.val_ratings, self.eval_batch_size, False, 1) if self.has_validation() else []

    def test_dataloader(self) -> TripleLoader | list:
        return self._loader(self.test_ratings, self.eval_batch_size, False, 1) if self.has_test() else []

    def transfer_batch_to_device(self, batch: list[Batch], device: torch.device, dataloader_idx: int) -> list[Batch]:
        # A chunk is a flat list of tensor triples: moving them directly skips Lightning's generic
        # collection walk, which costs more than a small SGD step. Tensors already there are kept.
        return [tuple(tensor.to(device, non_blocking=True) for tensor in batch_tensors) for batch_tensors in batch]

    def _loader(
        self, part: Ratings | None, batch_size: int, shuffle: bool, batches_per_chunk: int, rank: int = 0, world_size: int = 1,
    ) -> TripleLoader:
        if part is None:
            raise RuntimeError("RatingsDataModule.setup() must run before its data is used")
        # On a GPU the whole split moves there once and batches are sliced there: no copy per batch.
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return TripleLoader(
            part.users.to(device), part.movies.to(device), part.ratings.to(device), batch_size,
            shuffle=shuffle, seed=self.seed, batches_per_chunk=batches_per_chunk, rank=rank, world_size=world_size,
        )

    def _loaded(self) -> Ratings:
        if self.ratings is None:
            raise RuntimeError("RatingsDataModule.setup() must run before its data is used")
        return self.ratings
