"""Each split: disjoint, complete, seeded, and honest about who is held out."""

from __future__ import annotations

import pytest
import torch

from mfrec.data import RatingsDataModule
from mfrec.data.ratings import Ratings
from mfrec.data.splits import carve_validation, per_user_split, random_split, temporal_split
from mfrec.errors import ConfigError


def make_ratings(counts: list[int], with_time: bool = True) -> Ratings:
    """User u has counts[u] ratings, of movies 0..counts[u]-1, at times 100*u + movie."""
    users = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    movies = torch.cat([torch.arange(c) for c in counts])
    return Ratings(
        users=users, movies=movies, ratings=torch.full((len(users),), 4.0),
        user_ids=list(range(len(counts))), movie_ids=list(range(max(counts))),
        movie_titles=[f"m{j}" for j in range(max(counts))], rating_scale=(1.0, 5.0),
        timestamps=users * 100 + movies if with_time else None,
    )


def assert_partition(parts, size):
    joined = torch.cat(parts)
    assert sorted(joined.tolist()) == list(range(size))
    for part in parts:
        assert part.tolist() == sorted(part.tolist())  # each part keeps the source order


def test_random_split_sizes_and_seed():
    ratings = make_ratings([10] * 10)
    train, val, test = random_split(ratings, 0.1, 0.2, seed=1)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert_partition((train, val, test), 100)
    assert torch.equal(test, random_split(ratings, 0.1, 0.2, seed=1)[2])
    assert not torch.equal(test, random_split(ratings, 0.1, 0.2, seed=2)[2])


def test_per_user_split_holds_out_a_fraction_of_each_user_and_keeps_one_training_rating():
    ratings = make_ratings([10, 1, 2, 5])
    train, val, test = per_user_split(ratings, val_fraction=0.2, test_fraction=0.5, seed=0)
    assert_partition((train, val, test), len(ratings))
    per_user = lambda part: torch.bincount(ratings.users[part], minlength=4).tolist()  # noqa: E731
    assert per_user(test) == [5, 0, 1, 2]
    assert per_user(val) == [2, 0, 0, 1]
    assert all(count >= 1 for count in per_user(train))


def test_temporal_global_cut_holds_out_the_latest_ratings():
    ratings = make_ratings([4, 4, 4])
    train, val, test = temporal_split(ratings, val_fraction=0.25, test_fraction=0.25, leave_last_k=None)
    times = ratings.timestamps
    assert times[train].max() < times[val].min() and times[val].max() < times[test].min()
    assert (len(train), len(val), len(test)) == (6, 3, 3)


def test_temporal_leave_last_k_per_user():
    ratings = make_ratings([5, 2, 1])
    train, val, test = temporal_split(ratings, val_fraction=0.1, test_fraction=0.0, leave_last_k=2)
    held = lambda part: sorted(zip(ratings.users[part].tolist(), ratings.movies[part].tolist()))  # noqa: E731
    assert held(test) == [(0, 3), (0, 4), (1, 1)]  # user 1 keeps one training rating, user 2 all
    assert held(val) == [(0, 1), (0, 2)]
    assert held(train) == [(0, 0), (1, 0), (2, 0)]


def test_temporal_split_needs_timestamps():
    with pytest.raises(ConfigError, match="'temporal' needs timestamps"):
        temporal_split(make_ratings([3], with_time=False), 0.0, 0.3)


def test_validation_is_carved_from_a_predefined_training_fold():
    train, val = carve_validation(torch.arange(10, 30), val_fraction=0.25, seed=0)
    assert len(val) == 5 and len(train) == 15
    assert sorted(torch.cat([train, val]).tolist()) == list(range(10, 30))


class FoldedSource:
    """A source with one predefined fold: the odd positions are its test part."""

    def __init__(self, ratings: Ratings):
        self.ratings = ratings

    def load(self) -> Ratings:
        return self.ratings

    def fold_indices(self, ratings: Ratings, fold: str):
        if fold != "f1":
            raise ConfigError("data.fold", f"unknown fold {fold}")
        positions = torch.arange(len(ratings))
        return positions[positions % 2 == 0], positions[positions % 2 == 1]


def test_datamodule_predefined_split_and_cold_start_report(caplog):
    ratings = make_ratings([2, 2, 1])  # user 2's only rating sits at an even position... and movie 1 only odd
    datamodule = RatingsDataModule(FoldedSource(ratings), split="predefined", fold="f1", val_fraction=0.0)
    datamodule.setup()
    assert len(datamodule.test_ratings) == 2
    assert datamodule.known_movies().tolist() == [True, False]
    assert "1 movies have no training ratings" in caplog.text.replace("0 users and ", "")


def test_predefined_split_needs_a_fold_and_a_source_with_folds():
    with pytest.raises(ConfigError, match="data.fold"):
        RatingsDataModule(FoldedSource(make_ratings([2])), split="predefined").setup()
    from mfrec.data import DenseMatrix

    with pytest.raises(ConfigError, match="needs a source with folds"):
        RatingsDataModule(DenseMatrix([[1, 2]]), split="predefined", fold="u1").setup()


def test_unknown_split_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: random, per_user, temporal, predefined"):
        RatingsDataModule(FoldedSource(make_ratings([2])), split="kfold")
