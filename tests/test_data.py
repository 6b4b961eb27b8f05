import pytest
import torch

from mfrec.data import DenseMatrix, RatingsDataModule, TripleLoader, Triples
from mfrec.data.splits import random_split
from mfrec.errors import ConfigError, DataError

SEED_MATRIX = [[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]]


def test_dense_matrix_yields_the_observed_entries_in_row_major_order():
    ratings = DenseMatrix(SEED_MATRIX, movie_names=["A", "B", "C", "D"]).load()
    assert len(ratings) == 13
    assert ratings.users.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert ratings.movies.tolist() == [0, 1, 3, 0, 3, 0, 1, 3, 0, 3, 1, 2, 3]
    assert ratings.ratings.tolist() == [5, 3, 1, 4, 1, 1, 1, 5, 1, 4, 1, 5, 4]
    assert ratings.movie_titles == ["A", "B", "C", "D"]
    assert ratings.rating_scale == (1.0, 5.0)


@pytest.mark.parametrize(
    "matrix, message",
    [
        ([], "is empty"),
        ([[0, 0], [0, 0]], "no observed ratings"),
        ([[1, 2], [3]], "row 1 has 1 values"),
        ([[1, "x"]], "ratings must be numbers"),
    ],
)
def test_dense_matrix_rejects_bad_matrices_naming_the_key(matrix, message):
    with pytest.raises(DataError, match=message) as error:
        DenseMatrix(matrix).load()
    assert "data.source.matrix" in str(error.value)


def test_declared_rating_scale_must_hold_every_rating():
    with pytest.raises(DataError, match=r"rating_scale is \[1.0, 5.0\] but the data holds the rating 7"):
        DenseMatrix([[7, 1]], rating_scale=[1, 5]).load()


def test_triples_map_raw_ids_to_indices_in_order_of_appearance():
    ratings = Triples([["ann", "m9", 4], ["bob", "m1", 2], ["ann", "m1", 5], ["ann", "m9", 3]]).load()
    assert ratings.user_ids == ["ann", "bob"]
    assert ratings.movie_ids == ["m9", "m1"]
    # the repeated (ann, m9) pair keeps its last rating
    assert list(zip(ratings.users.tolist(), ratings.movies.tolist(), ratings.ratings.tolist())) == [
        (0, 0, 3.0), (1, 1, 2.0), (0, 1, 5.0)
    ]


def test_triples_reject_a_non_numeric_rating():
    with pytest.raises(DataError, match=r"data.source.triples\[1\]: rating 'five' is not a number"):
        Triples([[1, 1, 4], [1, 2, "five"]]).load()


def _loader(n: int, **options) -> TripleLoader:
    index = torch.arange(n)
    return TripleLoader(index, index * 10, index.float(), **options)


def test_unshuffled_batches_are_consecutive_slices_grouped_in_chunks():
    loader = _loader(7, batch_size=2, batches_per_chunk=3)
    chunks = list(loader)
    assert len(loader) == len(chunks) == 2
    assert [[users.tolist() for users, _, _ in chunk] for chunk in chunks] == [[[0, 1], [2, 3], [4, 5]], [[6]]]
    users, movies, ratings = chunks[0][1]
    assert movies.tolist() == [20, 30] and ratings.tolist() == [2.0, 3.0]


def test_shuffled_order_depends_only_on_seed_and_epoch():
    def epoch_order(seed: int, epoch: int) -> list[int]:
        loader = _loader(50, batch_size=8, shuffle=True, seed=seed)
        loader.sampler.set_epoch(epoch)
        return torch.cat([users for chunk in loader for users, _, _ in chunk]).tolist()

    assert sorted(epoch_order(1, 0)) == list(range(50))
    assert epoch_order(1, 0) == epoch_order(1, 0)
    assert epoch_order(1, 0) != epoch_order(1, 1)
    assert epoch_order(1, 0) != epoch_order(2, 0)


def test_random_split_is_seeded_disjoint_and_keeps_source_order():
    ratings = DenseMatrix([[1 + (i * j) % 5 for j in range(10)] for i in range(10)]).load()
    train, val, test = (ratings.subset(i) for i in random_split(ratings, val_fraction=0.1, test_fraction=0.2, seed=3))
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    keys = [set(zip(part.users.tolist(), part.movies.tolist())) for part in (train, val, test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    flat = (train.users * 10 + train.movies).tolist()
    assert flat == sorted(flat)
    again = ratings.subset(random_split(ratings, val_fraction=0.1, test_fraction=0.2, seed=3)[2])
    assert torch.equal(again.users, test.users) and torch.equal(again.movies, test.movies)


def test_split_fractions_must_leave_training_data():
    ratings = DenseMatrix(SEED_MATRIX).load()
    with pytest.raises(ConfigError, match="data.val_fraction"):
        random_split(ratings, val_fraction=0.6, test_fraction=0.5, seed=0)


def test_datamodule_serves_all_13_seed_ratings_one_per_batch():
    datamodule = RatingsDataModule(DenseMatrix(SEED_MATRIX), batch_size=1, shuffle=False)
    datamodule.setup("fit")
    batches = [batch for chunk in datamodule.train_dataloader() for batch in chunk]
    assert len(batches) == 13
    assert all(len(rating) == 1 for _, _, rating in batches)
    assert datamodule.val_dataloader() == [] and not datamodule.has_test()
