"""Synthetic ratings: seeded, shaped like MovieLens, fast at 25M ratings."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from mfrec.data.synthetic import SyntheticRatings
from mfrec.errors import ConfigError


def make(**overrides) -> SyntheticRatings:
    arguments = dict(num_users=300, num_items=200, num_ratings=6000, seed=3)
    arguments.update(overrides)
    return SyntheticRatings(**arguments)


def test_shape_types_and_scale():
    ratings = make(rating_scale=(0.5, 5.0)).load()
    assert len(ratings) == 6000 and ratings.num_users == 300 and ratings.num_movies == 200
    assert ratings.users.dtype == ratings.movies.dtype == ratings.timestamps.dtype == torch.int64
    assert ratings.ratings.dtype == torch.float32
    assert 0 <= int(ratings.users.min()) and int(ratings.users.max()) < 300 and int(ratings.movies.max()) < 200
    assert ratings.rating_scale == (0.5, 5.0)
    assert float(ratings.ratings.min()) >= 0.5 and float(ratings.ratings.max()) <= 5.0
    assert torch.equal(ratings.ratings * 2, (ratings.ratings * 2).round())  # half stars
    assert len(ratings.ratings.unique()) > 5
    assert len(ratings.movie_titles) == 200 and ratings.user_ids == list(range(300))


def test_pairs_are_unique_and_timestamps_increase():
    ratings = make().load()
    pairs = ratings.users * 200 + ratings.movies
    assert len(pairs.unique()) == len(pairs)
    assert bool((ratings.timestamps[1:] > ratings.timestamps[:-1]).all())


def test_a_full_matrix_is_possible_and_more_is_refused():
    ratings = make(num_users=7, num_items=5, num_ratings=35).load()
    assert sorted((ratings.users * 5 + ratings.movies).tolist()) == list(range(35))
    with pytest.raises(ConfigError, match="more than num_users \\* num_items = 35") as error:
        make(num_users=7, num_items=5, num_ratings=36)
    assert error.value.key == "data.source.num_ratings"


def test_same_seed_same_ratings_other_seed_other_ratings():
    first, again, other = make().load(), make().load(), make(seed=4).load()
    for name in ("users", "movies", "ratings", "timestamps"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.ratings, other.ratings)


def test_the_global_random_generators_are_untouched():
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    make().load()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_item_popularity_follows_a_capped_power_law():
    source = make(num_users=1000, num_items=500, num_ratings=50_000, popularity_exponent=1.0)
    counts = source.item_counts()
    assert counts.sum() == 50_000 and counts.max() <= 1000
    assert np.all(counts[:-1] >= counts[1:])  # by popularity rank
    assert counts[0] > 20 * counts[-1]
    flat = make(num_users=1000, num_items=500, num_ratings=50_000, popularity_exponent=0.0).item_counts()
    assert flat.max() - flat.min() <= 1
    observed = torch.bincount(source.load().movies, minlength=500).sort(descending=True).values.numpy()
    assert np.array_equal(observed, counts)


def test_ratings_carry_the_low_rank_signal_beyond_the_noise():
    clean = make(noise=0.0).load().ratings
    noisy = make(noise=0.5).load().ratings  # same pairs and model, different noise
    correlation = np.corrcoef(clean.numpy(), noisy.numpy())[0, 1]
    assert 0.6 < correlation < 0.99


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(num_users=0), "data.source.num_users"),
        (dict(num_items=2.5), "data.source.num_items"),
        (dict(rank=0), "data.source.rank"),
        (dict(noise=-1), "data.source.noise"),
        (dict(popularity_exponent=float("nan")), "data.source.popularity_exponent"),
        (dict(rating_scale=(5, 1)), "data.source.rating_scale"),
        (dict(seed=-1), "data.source.seed"),
    ],
)
def test_invalid_arguments_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        make(**overrides)
    assert error.value.key == key


SCRIPT = """
import json, resource, time
from mfrec.data.synthetic import SyntheticRatings
start = time.perf_counter()
ratings = SyntheticRatings(162_541, 59_047, 25_000_000).load()
seconds = time.perf_counter() - start
pairs = ratings.users * 59_047 + ratings.movies
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "count": len(ratings), "unique": int(pairs.unique().numel())}))
"""


@pytest.mark.slow
def test_movielens_25m_shape_generates_in_well_under_a_minute():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["count"] == figures["unique"] == 25_000_000
    assert figures["seconds"] < 30
    assert figures["peak_mb"] < 2500  # including the interpreter and torch, and the uniqueness check
