"""Train / validation / test splits, as positions into a Ratings object, reproducible from a seed.

Every function returns ``(train, val, test)`` index tensors, each sorted so that a split keeps the
source's order (the seed's row-major order survives an all-training split). Randomness comes from a
private generator: splitting never consumes the global random stream the model's initialisation uses.
"""

from __future__ import annotations

import torch

from mfrec.data.ratings import Ratings
from mfrec.errors import ConfigError

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for key, fraction in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(key, f"must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("data.val_fraction", "val_fraction + test_fraction must be below 1 to leave training data")


def random_split(ratings: Ratings, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Hold out random fractions of all ratings."""
    check_fractions(val_fraction, test_fraction)
    return _cut(_permutation(len(ratings), seed), [test_fraction, val_fraction])


def per_user_split(ratings: Ratings, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Hold out a fraction of each user's ratings; every user keeps at least one training rating."""
    check_fractions(val_fraction, test_fraction)
    order = _permutation(len(ratings), seed)
    order = order[torch.sort(ratings.users[order], stable=True).indices]  # by user, random within a user
    rank, count = _rank_within(ratings.users[order])
    num_test = torch.floor(count * test_fraction)
    num_val = torch.minimum(torch.floor(count * val_fraction), count - 1 - num_test).clamp(min=0)
    test = order[rank < num_test]
    val = order[(rank >= num_test) & (rank < num_test + num_val)]
    train = order[rank >= num_test + num_val]
    return _sorted(train), _sorted(val), _sorted(test)


def temporal_split(
    ratings: Ratings, val_fraction: float, test_fraction: float, leave_last_k: int | None = None
) -> Split:
    """Split by time: a global cut (the latest fractions), or each user's last ``leave_last_k`` ratings.

    With ``leave_last_k`` the test set holds each user's k latest ratings and, when ``val_fraction``
    is above zero, the validation set the k before them; users keep at least one training rating.
    """
    if ratings.timestamps is None:
        raise ConfigError("data.split", "'temporal' needs timestamps, and this source has none; use random or per_user")
    if leave_last_k is None:
        check_fractions(val_fraction, test_fraction)
        latest_first = torch.argsort(ratings.timestamps, descending=True, stable=True)
        return _cut(latest_first, [test_fraction, val_fraction])
    if leave_last_k < 1:
        raise ConfigError("data.leave_last_k", f"must be an integer >= 1 or null, got {leave_last_k}")
    by_time = torch.argsort(ratings.timestamps, descending=True, stable=True)
    order = by_time[torch.sort(ratings.users[by_time], stable=True).indices]  # by user, latest first
    rank, count = _rank_within(ratings.users[order])
    num_test = torch.clamp(count - 1, max=leave_last_k)
    num_val = torch.clamp(count - 1 - num_test, max=leave_last_k if val_fraction > 0 else 0)
    test = order[rank < num_test]
    val = order[(rank >= num_test) & (rank < num_test + num_val)]
    train = order[rank >= num_test + num_val]
    return _sorted(train), _sorted(val), _sorted(test)


def carve_validation(train: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Take a random validation fraction out of given training positions (e.g. a predefined fold)."""
    check_fractions(val_fraction, 0.0)
    shuffled = train[_permutation(len(train), seed)]
    num_val = round(len(train) * val_fraction)
    return _sorted(shuffled[num_val:]), _sorted(shuffled[:num_val])


def _permutation(size: int, seed: int) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))


def _cut(order: torch.Tensor, fractions: list[float]) -> Split:
    """Take the first fractions of ``order`` as test then val; the rest is training."""
    size = len(order)
    num_test, num_val = (round(size * fraction) for fraction in fractions)
    test = order[:num_test]
    val = order[num_test : num_test + num_val]
    train = order[num_test + num_val :]
    return _sorted(train), _sorted(val), _sorted(test)


def _rank_within(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a sorted group id per element: its position within its group, and its group's size."""
    _, counts = torch.unique_consecutive(groups, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return torch.arange(len(groups)) - starts, torch.repeat_interleave(counts, counts).to(torch.float64)


def check_training_left(train: torch.Tensor) -> None:
    if len(train) == 0:
        raise ConfigError("data.val_fraction", "the split leaves no training ratings; hold out smaller fractions")


def _sorted(index: torch.Tensor) -> torch.Tensor:
    return torch.sort(index).values
