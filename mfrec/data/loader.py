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
    """

    def __init__(self, size: int, shuffle: bool, seed: int):
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor | None:
        """A permutation of range(size), or None for the natural order."""
        if not self.shuffle:
            return None
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=generator)


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
    ):
        self.tensors = (users, movies, ratings)
        self.batch_size = batch_size
        self.batches_per_chunk = batches_per_chunk
        # Named `sampler` because that is where Lightning looks for `set_epoch`.
        self.sampler = EpochOrder(len(ratings), shuffle, seed)

    def __len__(self) -> int:
        chunk = self.batch_size * self.batches_per_chunk
        return -(-self.sampler.size // chunk)

    def __iter__(self) -> Iterator[list[Batch]]:
        order = self.sampler.indices()
        if order is not None:  # drawn on the CPU (the same order on every device), used where the data is
            order = order.to(self.tensors[0].device)
        chunk = self.batch_size * self.batches_per_chunk
        for start in range(0, self.sampler.size, chunk):
            if order is None:
                parts = [tensor[start : start + chunk] for tensor in self.tensors]
            else:
                index = order[start : start + chunk]
                parts = [tensor.index_select(0, index) for tensor in self.tensors]  # a few times faster than tensor[index]
            yield list(zip(*(part.split(self.batch_size) for part in parts)))
