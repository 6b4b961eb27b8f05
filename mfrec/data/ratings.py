"""Ratings: observed (user, movie, rating) triples as tensors, with the maps back to raw ids and titles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from mfrec.errors import ConfigError


@dataclass(frozen=True)
class Ratings:
    """Observed ratings, one entry per (user, movie) pair.

    ``users`` and ``movies`` hold contiguous indices; ``user_ids[i]`` / ``movie_ids[j]`` give the raw
    ids a user knows, and ``movie_titles[j]`` a readable name. Subsets share the maps, so an index
    means the same user or movie in every split.
    """

    users: torch.Tensor  # int64, index into user_ids
    movies: torch.Tensor  # int64, index into movie_ids
    ratings: torch.Tensor  # float32
    user_ids: list
    movie_ids: list
    movie_titles: list[str]
    rating_scale: tuple[float, float]
    timestamps: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not len(self.users) == len(self.movies) == len(self.ratings):
            raise ValueError("users, movies and ratings must have the same length")

    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_movies(self) -> int:
        return len(self.movie_ids)

    def subset(self, index: torch.Tensor) -> Ratings:
        """The ratings at ``index`` (in that order), sharing this object's id maps and titles."""
        return replace(
            self,
            users=self.users[index],
            movies=self.movies[index],
            ratings=self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
        )


def parse_rating_scale(value: Sequence[float] | None, key: str = "data.source.rating_scale") -> tuple[float, float] | None:
    """A declared ``[low, high]`` rating scale as two floats (None stays None: use the observed range)."""
    if value is None:
        return None
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values) or not values[0] < values[1]:
        raise ConfigError(key, f"got {values!r}; valid: [low, high] with low < high, or null for the observed range")
    return float(values[0]), float(values[1])
