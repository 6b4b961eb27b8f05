"""Batches of (user, movie, rating) triples cut from whole tensors.

Spotlight's recipe: one (optionally shuffled) index per epoch, batches are slices of it, so there is
no per-sample ``__getitem__`` and no collate. Batches are handed to Lightning in chunks of several:
Lightning costs about a millisecond per ``training_step`` call, which would dwarf a small SGD step,
so the module takes one optimizer step per batch inside a single call (Keras' steps_per_execution).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class EpochOrder:
    """The order in which an epoch visits the ratings; Lightning calls ``set_epoch`` before each epoch.

    The shuffled order depends only on (seed, epoch), so a resumed run sees the batches it would have.
    Under DDP every process draws the same order and visits its own shard of it (see ``shard``).
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """How many ratings this process visits per epoch."""
        return self.size // self.world_size

    def indices(self) -> torch.Tensor | None:
        """This process's indices into range(size) in visiting order, or None for all of them in order."""
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        return shard(order, self.rank, self.world_size)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s share of an epoch's ``order``: every ``world_size``-th index from ``rank`` on.

    The shares are disjoint and equally long, so every process takes the same number of optimizer
    steps (DDP averages their gradients at each one); the last ``len(order) % world_size`` indices
    are dropped, fewer than one per process and different ones each epoch when shuffled. Striding
    rather than cutting blocks makes the processes' i-th batches together the i-th batch a single
    process would take with ``world_size`` times the batch size.
    """
    return order[rank : len(order) - len(order) % world_size : world_size]


class TripleLoader:
    """Yields chunks (lists) of up to ``batches_per_chunk`` batches of ``batch_size`` triples."""

    batch_sampler = None  # Lightning inspects this beside `sampler`; batching is done here

    def __init__(
        self,
        users: torch.Tensor,
        movies: torch.Tensor,
        ratings: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        batches_per_chunk: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.tensors = (users, movies, ratings)
        self.batch_size = batch_size
        self.batches_per_chunk = batches_per_chunk
        # Named `sampler` because that is where Lightning looks for `set_epoch`.
        self.sampler = EpochOrder(len(ratings), shuffle, seed, rank, world_size)

    def __len__(self) -> int:
        chunk = self.batch_size * self.batches_per_chunk
        return -(-len(self.sampler) // chunk)

    def __iter__(self) -> Iterator[list[Batch]]:
        order = self.sampler.indices()
        if order is not None:  # drawn on the CPU (the same order on every device), used where the data is
            order = order.to(self.tensors[0].device)
        chunk = self.batch_size * self.batches_per_chunk
        for start in range(0, len(self.sampler), chunk):
            if order is None:
                parts = [tensor[start : start + chunk] for tensor in self.tensors]
            else:
                index = order[start : start + chunk]
                parts = [tensor.index_select(0, index) for tensor in self.tensors]  # a few times faster than tensor[index]
            yield list(zip(*(part.split(self.batch_size) for part in parts)))
