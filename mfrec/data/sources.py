"""Ratings sources written inline in YAML: a dense matrix (the seed's) or a list of triples."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mfrec.data.ratings import Ratings, parse_rating_scale
from mfrec.errors import DataError


class DenseMatrix:
    """A users x movies matrix in which ``missing`` (0 in the seed) means "not rated".

    Observed entries are read in row-major order, the order of the seed's training loop.
    """

    def __init__(
        self,
        matrix: Sequence[Sequence[float]],
        movie_names: Sequence[str] | None = None,
        missing: float = 0.0,
        rating_scale: Sequence[float] | None = None,
    ):
        self.matrix = matrix
        self.movie_names = movie_names
        self.missing = missing
        self.rating_scale = rating_scale

    def load(self) -> Ratings:
        key = "data.source.matrix"
        rows = [list(row) for row in self.matrix] if self.matrix is not None else []
        if not rows or not rows[0]:
            raise DataError(f"{key} is empty: give a non-empty list of rows, e.g. [[5, 3, 0], [4, 0, 1]]")
        width = len(rows[0])
        for number, row in enumerate(rows):
            if len(row) != width:
                raise DataError(f"{key}: row {number} has {len(row)} values but row 0 has {width}; all rows need the same length")
            for value in row:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise DataError(f"{key}: row {number} holds {value!r}; ratings must be numbers ({self.missing} = not rated)")
        dense = torch.tensor(rows, dtype=torch.float32)
        observed = dense != self.missing
        if not observed.any():
            raise DataError(f"{key} has no observed ratings: every entry is {self.missing} (= not rated)")
        users, movies = observed.nonzero(as_tuple=True)  # row-major, like the seed's loop
        names = list(self.movie_names) if self.movie_names is not None else [f"Movie_{j}" for j in range(width)]
        if len(names) != width:
            raise DataError(f"data.source.movie_names has {len(names)} names but the matrix has {width} columns")
        values = dense[users, movies]
        return Ratings(
            users=users,
            movies=movies,
            ratings=values,
            user_ids=list(range(len(rows))),
            movie_ids=list(range(width)),
            movie_titles=[str(name) for name in names],
            rating_scale=_scale(self.rating_scale, values, "data.source.rating_scale"),
        )


class Triples:
    """A list of ``[user, movie, rating]`` triples with raw ids of any hashable kind (ints or strings).

    Ids are numbered in order of first appearance; ``movie_names`` optionally maps raw movie ids to titles.
    """

    def __init__(
        self,
        triples: Sequence[Sequence[object]],
        movie_names: dict | None = None,
        rating_scale: Sequence[float] | None = None,
    ):
        self.triples = triples
        self.movie_names = movie_names
        self.rating_scale = rating_scale

    def load(self) -> Ratings:
        key = "data.source.triples"
        if not self.triples:
            raise DataError(f"{key} is empty: give a list of [user, movie, rating] triples")
        user_index: dict = {}
        movie_index: dict = {}
        latest: dict[tuple[int, int], float] = {}
        for number, triple in enumerate(self.triples):
            if len(triple) != 3:
                raise DataError(f"{key}[{number}] = {list(triple)!r}: expected [user, movie, rating]")
            user, movie, rating = triple
            if isinstance(rating, bool) or not isinstance(rating, (int, float)) or rating != rating:
                raise DataError(f"{key}[{number}]: rating {rating!r} is not a number")
            pair = (user_index.setdefault(user, len(user_index)), movie_index.setdefault(movie, len(movie_index)))
            latest[pair] = float(rating)  # a repeated pair keeps its last rating
        pairs = torch.tensor(list(latest), dtype=torch.int64)
        values = torch.tensor(list(latest.values()), dtype=torch.float32)
        names = dict(self.movie_names or {})
        return Ratings(
            users=pairs[:, 0],
            movies=pairs[:, 1],
            ratings=values,
            user_ids=list(user_index),
            movie_ids=list(movie_index),
            movie_titles=[str(names.get(movie, movie)) for movie in movie_index],
            rating_scale=_scale(self.rating_scale, values, "data.source.rating_scale"),
        )


def _scale(declared: Sequence[float] | None, values: torch.Tensor, key: str) -> tuple[float, float]:
    """The declared rating scale (checked against the data), or the observed min and max."""
    scale = parse_rating_scale(declared, key)
    if scale is None:
        return float(values.min()), float(values.max())
    low, high = scale
    outside = (values < low) | (values > high)
    if outside.any():
        raise DataError(f"{key} is [{low}, {high}] but the data holds the rating {float(values[outside][0])}")
    return low, high
