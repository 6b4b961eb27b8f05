"""Train / validation / test splits of a Ratings object, reproducible from a seed."""

from __future__ import annotations

import torch

from mfrec.data.ratings import Ratings
from mfrec.errors import ConfigError


def random_split(
    ratings: Ratings, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Ratings, Ratings, Ratings]:
    """Hold out random fractions of the ratings; each part keeps the source's order."""
    for key, fraction in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(key, f"must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("data.val_fraction", "val_fraction + test_fraction must be below 1 to leave training data")
    size = len(ratings)
    num_test = round(size * test_fraction)
    num_val = round(size * val_fraction)
    # A private generator: splitting must not consume the global random stream the model draws from.
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    test = order[:num_test].sort().values
    val = order[num_test : num_test + num_val].sort().values
    train = order[num_test + num_val :].sort().values
    return ratings.subset(train), ratings.subset(val), ratings.subset(test)
