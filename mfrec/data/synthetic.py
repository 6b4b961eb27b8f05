"""Synthetic ratings at any scale: MovieLens-sized data for benchmarks and tests without downloading.

Ratings come from a known low-rank model (user/item biases plus a rank-``rank`` dot product) with
Gaussian noise, rounded to half stars and clipped to the scale, so a matrix-factorization model has
something real to recover. Item popularity follows a power law (the item of popularity rank r gets a
share proportional to r**-popularity_exponent) capped at one rating per user, users are spread
evenly, and timestamps increase through the returned order.

(user, item) pairs are unique by construction: item j's n_j raters are users
``(offset_j + stride_j * k) mod num_users`` for k < n_j with stride_j coprime to num_users, which are
n_j distinct users, so no pair repeats and none needs to be dropped.

Everything is drawn from one ``numpy.random.Generator`` seeded with ``seed``: the global numpy and
torch generators are never touched, and the same arguments give the same ratings. The work is
vectorised (a few passes over int64 arrays, the dot products in chunks), so MovieLens-25M's shape
(25M ratings, 162,541 users, 59,047 items) takes seconds and about 1.5 GB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mfrec.data.ratings import Ratings, parse_rating_scale
from mfrec.errors import ConfigError

_FIRST_TIMESTAMP = 789_652_009  # 1995-01-09, MovieLens' first rating
_TIME_SPAN = 25 * 365 * 86_400  # seconds the timestamps spread over
_CHUNK = 1 << 20  # ratings per chunk of dot products


class SyntheticRatings:
    """``num_ratings`` seeded ratings of ``num_items`` movies by ``num_users`` users (see the module doc)."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_ratings: int,
        rank: int = 8,
        noise: float = 0.5,
        popularity_exponent: float = 1.0,
        rating_scale: Sequence[float] = (1.0, 5.0),
        seed: int | None = 0,
    ):
        for key, value in (("num_users", num_users), ("num_items", num_items), ("num_ratings", num_ratings), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.source.{key}", f"got {value!r}; valid: an integer >= 1")
        if num_ratings > num_users * num_items:
            raise ConfigError(
                "data.source.num_ratings",
                f"got {num_ratings}, more than num_users * num_items = {num_users * num_items} distinct (user, movie) pairs",
            )
        for key, value in (("noise", noise), ("popularity_exponent", popularity_exponent)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"data.source.{key}", f"got {value!r}; valid: a number >= 0")
        scale = parse_rating_scale(rating_scale)
        if scale is None:
            raise ConfigError("data.source.rating_scale", "synthetic ratings need a scale, e.g. [1, 5]")
        seed = 0 if seed is None else seed  # an unseeded run (seed=null) still gets reproducible data
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError("data.source.seed", f"got {seed!r}; valid: an integer >= 0")
        self.num_users, self.num_items, self.num_ratings = num_users, num_items, num_ratings
        self.rank, self.noise, self.popularity_exponent = rank, float(noise), float(popularity_exponent)
        self.rating_scale = scale
        self.seed = seed

    def load(self) -> Ratings:
        """Generate the ratings (same arguments, same ratings)."""
        rng = np.random.default_rng(self.seed)
        users, items = self._pairs(rng)
        ratings = self._ratings(rng, users, items)
        gaps = rng.integers(1, max(2, 2 * _TIME_SPAN // self.num_ratings), size=self.num_ratings, dtype=np.int64)
        timestamps = np.cumsum(gaps, out=gaps)
        timestamps += _FIRST_TIMESTAMP
        return Ratings(
            users=torch.from_numpy(users),
            movies=torch.from_numpy(items),
            ratings=torch.from_numpy(ratings),
            user_ids=list(range(self.num_users)),
            movie_ids=list(range(self.num_items)),
            movie_titles=[f"Synthetic movie {item}" for item in range(self.num_items)],
            rating_scale=self.rating_scale,
            timestamps=torch.from_numpy(timestamps),
        )

    def item_counts(self) -> np.ndarray:
        """Ratings per item in popularity-rank order: a power law capped at ``num_users``, summing to ``num_ratings``."""
        cap, total = self.num_users, self.num_ratings
        weights = np.arange(1, self.num_items + 1, dtype=np.float64) ** -self.popularity_exponent
        tail_sums = np.cumsum(weights[::-1])[::-1]  # sum of weights[k:]
        capped = np.arange(self.num_items)
        remaining = total - capped * cap  # left for the uncapped items if the first k are capped
        fits = (remaining >= 0) & (remaining * weights <= cap * tail_sums)
        first = int(np.argmax(fits)) if fits.any() else self.num_items
        counts = np.full(self.num_items, cap, dtype=np.int64)
        if first < self.num_items:
            share = (total - first * cap) * weights[first:] / tail_sums[first]
            counts[first:] = np.floor(share).astype(np.int64)
            left = total - int(counts.sum())
            fraction = np.concatenate((np.full(first, -1.0), share - np.floor(share)))
            while left > 0:  # hand out what rounding down left, largest remainders first
                room = np.flatnonzero(counts < cap)
                chosen = room[np.argsort(-fraction[room], kind="stable")[:left]]
                counts[chosen] += 1
                fraction[chosen] = -1.0
                left = total - int(counts.sum())
        return counts

    def _pairs(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (user, item) pairs in random order: item j gets its count of distinct users."""
        counts = np.empty(self.num_items, dtype=np.int64)
        counts[rng.permutation(self.num_items)] = self.item_counts()  # which item has which popularity
        items = np.repeat(np.arange(self.num_items, dtype=np.int64), counts)
        starts = np.cumsum(counts) - counts
        within = np.arange(self.num_ratings, dtype=np.int64)
        within -= np.repeat(starts, counts)
        strides = self._coprime_strides(rng)
        users = strides[items]
        users *= within
        del within
        users += rng.integers(0, self.num_users, size=self.num_items, dtype=np.int64)[items]
        users %= self.num_users
        order = rng.permutation(self.num_ratings)
        return users[order], items[order]

    def _coprime_strides(self, rng: np.random.Generator) -> np.ndarray:
        """One step per item, coprime with num_users, so k -> offset + step * k visits distinct users."""
        if self.num_users == 1:
            return np.ones(self.num_items, dtype=np.int64)
        strides = rng.integers(1, self.num_users, size=self.num_items, dtype=np.int64)
        while True:
            bad = np.flatnonzero(np.gcd(strides, self.num_users) != 1)
            if len(bad) == 0:
                return strides
            strides[bad] = rng.integers(1, self.num_users, size=len(bad), dtype=np.int64)

    def _ratings(self, rng: np.random.Generator, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Low-rank scores plus noise, mapped onto the scale, rounded to half stars and clipped."""
        low, high = self.rating_scale
        factor_std = self.rank ** -0.25  # so that a dot product has variance about 1
        user_factors = rng.normal(0.0, factor_std, size=(self.num_users, self.rank)).astype(np.float32)
        item_factors = rng.normal(0.0, factor_std, size=(self.num_items, self.rank)).astype(np.float32)
        user_bias = rng.normal(0.0, 0.5, size=self.num_users).astype(np.float32)
        item_bias = rng.normal(0.0, 0.5, size=self.num_items).astype(np.float32)
        center, spread = low + 0.625 * (high - low), 0.2 * (high - low)  # mean 3.5 and sd ~1 on a 1-5 scale
        ratings = np.empty(self.num_ratings, dtype=np.float32)
        for start in range(0, self.num_ratings, _CHUNK):
            u, i = users[start : start + _CHUNK], items[start : start + _CHUNK]
            score = np.einsum("nr,nr->n", user_factors[u], item_factors[i])
            score += user_bias[u]
            score += item_bias[i]
            value = center + spread * score + self.noise * rng.standard_normal(len(u), dtype=np.float32)
            ratings[start : start + _CHUNK] = value
        np.multiply(ratings, 2, out=ratings)
        np.round(ratings, out=ratings)
        np.multiply(ratings, 0.5, out=ratings)
        return np.clip(ratings, low, high, out=ratings)
