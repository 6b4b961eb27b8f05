"""mfrec.metrics against hand-computed examples and a slow, obviously-correct per-user reference."""

from __future__ import annotations

import math

import pytest
import torch

from mfrec.metrics import ranking_metrics

# ---------------------------------------------------------------------------------------------
# The hand-computed example: 4 users x 6 movies.
#
#            m0    m1    m2    m3    m4    m5
SCORES = torch.tensor(
    [
        [0.8, 0.5, 0.9, 0.3, 0.7, 0.2],  # user 0
        [0.1, 0.6, 0.2, 0.9, 0.4, 0.8],  # user 1
        [0.5, 0.5, 0.0, 0.5, 0.1, 0.0],  # user 2: ties
        [0.2, 0.3, 0.4, 0.9, 0.1, 0.0],  # user 3
    ]
)
# Training pairs: user 0 saw m1, user 1 saw m3.
TRAIN_USERS = torch.tensor([0, 1])
TRAIN_MOVIES = torch.tensor([1, 3])
# Test ratings (relevant at the default threshold 4.0 when marked *):
#   user 0: m0 5.0*, m3 4.0*, m5 3.0
#   user 1: m3 5.0* (but seen in training: never ranked, dropped from relevant), m1 4.5*, m4 2.0
#   user 2: m0 4.0*, m5 5.0*
#   user 3: m2 3.5            -> nothing relevant at 4.0: user 3 is skipped
TEST = [
    (0, 0, 5.0), (0, 3, 4.0), (0, 5, 3.0),
    (1, 3, 5.0), (1, 1, 4.5), (1, 4, 2.0),
    (2, 0, 4.0), (2, 5, 5.0),
    (3, 2, 3.5),
]  # fmt: skip
TEST_USERS = torch.tensor([user for user, _, _ in TEST])
TEST_MOVIES = torch.tensor([movie for _, movie, _ in TEST])
TEST_RATINGS = torch.tensor([rating for _, _, rating in TEST])

# Rankings once seen movies are removed (ties broken by the lower movie index):
#   user 0: m2 .9, m0 .8, m4 .7, m3 .3, m5 .2          relevant {m0, m3}
#   user 1: m5 .8, m1 .6, m4 .4, m2 .2, m0 .1          relevant {m1}
#   user 2: m0 .5, m1 .5, m3 .5, m4 .1, m2 0, m5 0     relevant {m0, m5}
#   user 3: m3 .9, m2 .4, m1 .3, m0 .2, m4 .1, m5 0    (not evaluated)
G = 1 / math.log2(3)  # gain at rank 2
#
# K = 3, hits per rank:  user 0 [0 1 0], user 1 [0 1 0], user 2 [1 0 0]
#   precision: 1/3, 1/3, 1/3                                   -> 1/3
#   recall:    1/2, 1/1, 1/2                                   -> 2/3
#   NDCG:      G / (1 + G)   (ideal: 2 hits at the top)
#              G / 1         (ideal: 1 hit)
#              1 / (1 + G)                                     -> (G/(1+G) + G + 1/(1+G)) / 3 = (1 + G) / 3
#   hit rate:  1, 1, 1                                         -> 1
#   MAP:       (1/2 * 1) / min(2, 3) = 1/4
#              (1/2 * 1) / min(1, 3) = 1/2
#              (1/1 * 1) / min(2, 3) = 1/2                     -> 5/12
#   coverage:  {m2 m0 m4} | {m5 m1 m4} | {m0 m1 m3} = all 6    -> 1
# K = 1, hits: user 0 [0] (m2), user 1 [0] (m5), user 2 [1] (m0, ahead of the tied m1 and m3)
#   precision 1/3, recall (0 + 0 + 1/2)/3 = 1/6, NDCG (0 + 0 + 1)/3, hit rate 1/3,
#   MAP (0 + 0 + 1/min(2, 1))/3 = 1/3,
#   coverage {m2, m5, m0} = 3/6 (user 3's m3 does not count: user 3 is not evaluated)
EXPECTED = {
    "precision@3": 1 / 3,
    "recall@3": 2 / 3,
    "ndcg@3": (1 + G) / 3,
    "hit_rate@3": 1.0,
    "map@3": 5 / 12,
    "coverage@3": 1.0,
    "precision@1": 1 / 3,
    "recall@1": 1 / 6,
    "ndcg@1": 1 / 3,
    "hit_rate@1": 1 / 3,
    "map@1": 1 / 3,
    "coverage@1": 0.5,
    "num_users": 3,
}


def score_table(scores: torch.Tensor, calls: list[torch.Tensor] | None = None):
    """A ``score_users`` that looks users up in a fixed table (indexing returns a fresh copy)."""

    def score_users(users: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(users.clone())
        return scores[users]

    return score_users


def example(**kwargs) -> dict[str, float]:
    return ranking_metrics(
        score_table(SCORES), 6, TRAIN_USERS, TRAIN_MOVIES, TEST_USERS, TEST_MOVIES, TEST_RATINGS, **kwargs
    )


def test_hand_computed_example():
    result = example(ks=(3, 1))
    assert set(result) == set(EXPECTED)
    for name, value in EXPECTED.items():
        assert result[name] == pytest.approx(value, abs=1e-12), name


def test_threshold_decides_relevance():
    # At 3.0, user 0 also has m5 (3.0) and user 3 gets m2 (3.5): 4 users.
    #   recall@3: user 0 [m2 m0 m4] vs {m0 m3 m5} -> 1/3; user 1 -> 1; user 2 -> 1/2;
    #             user 3 [m3 m2 m1] vs {m2} -> 1.    Mean (1/3 + 1 + 1/2 + 1) / 4 = 17/24.
    result = example(ks=(3,), threshold=3.0)
    assert result["num_users"] == 4
    assert result["recall@3"] == pytest.approx(17 / 24)
    # At 5.0 only user 0's m0, user 1's m3 (seen: dropped) and user 2's m5 count: users 0 and 2.
    #   user 0 [m2 m0 m4] vs {m0}: precision 1/3; user 2 [m0 m1 m3] vs {m5}: 0.
    result = example(ks=(3,), threshold=5.0)
    assert result["num_users"] == 2
    assert result["precision@3"] == pytest.approx(1 / 6)


def test_seen_movies_are_not_ranked_and_not_relevant():
    # One user, 3 movies; m0 scores highest but was seen in training, and is also rated 5 in test.
    scores = torch.tensor([[0.9, 0.8, 0.1]])
    test = (torch.tensor([0, 0]), torch.tensor([0, 2]), torch.tensor([5.0, 5.0]))
    result = ranking_metrics(score_table(scores), 3, torch.tensor([0]), torch.tensor([0]), *test, ks=(1, 2))
    # Ranking [m1, m2]; relevant {m2} (m0 dropped): top-1 misses, top-2 finds everything.
    assert result["precision@1"] == 0.0
    assert result["recall@2"] == 1.0
    assert result["precision@2"] == 0.5
    # Without the training pair m0 is ranked first and relevant: relevant {m0, m2}.
    empty = torch.zeros(0, dtype=torch.int64)
    result = ranking_metrics(score_table(scores), 3, empty, empty, *test, ks=(1, 2))
    assert result["precision@1"] == 1.0
    assert result["recall@2"] == 0.5


def test_user_whose_only_relevant_movie_was_seen_is_skipped():
    # User 1's only relevant movie at 5.0 is m3, seen in training (see test_threshold_decides_relevance).
    result = example(ks=(1,), threshold=5.0)
    assert result["num_users"] == 2


def test_padding_with_seen_movies_does_not_count_as_coverage():
    # User 0 saw m0..m3 of 5 movies: its top 2 is m4 then a seen (-inf) movie.
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    seen = torch.tensor([0, 1, 2, 3])
    result = ranking_metrics(
        score_table(scores), 5, torch.zeros(4, dtype=torch.int64), seen,
        torch.tensor([0]), torch.tensor([4]), torch.tensor([5.0]), ks=(2,),
    )  # fmt: skip
    assert result["coverage@2"] == pytest.approx(1 / 5)
    assert result["precision@2"] == 0.5
    assert result["map@2"] == 1.0


def test_ties_are_broken_by_lower_movie_index():
    # All scores equal: the ranking is m0, m1, m2, ... whatever topk's own order.
    num_movies = 50
    scores = torch.zeros(1, num_movies)
    empty = torch.zeros(0, dtype=torch.int64)
    test = (torch.tensor([0]), torch.tensor([3]), torch.tensor([5.0]))
    result = ranking_metrics(score_table(scores), num_movies, empty, empty, *test, ks=(3, 4))
    assert result["hit_rate@3"] == 0.0
    assert result["hit_rate@4"] == 1.0
    assert result["ndcg@4"] == pytest.approx(1 / math.log2(5))
    assert result["coverage@4"] == pytest.approx(4 / num_movies)


def test_no_relevant_users_gives_nan_and_zero_users():
    result = example(ks=(1,), threshold=10.0)
    assert result["num_users"] == 0
    assert math.isnan(result["precision@1"])
    assert result["coverage@1"] == 0.0


# ---------------------------------------------------------------------------------------------
# Random data against a per-user reference.


def random_data(num_users: int = 40, num_movies: int = 30, seed: int = 0, integer_scores: bool = True):
    """Random scores (integers, so that ties are common), train pairs and test ratings."""
    generator = torch.Generator().manual_seed(seed)
    if integer_scores:
        scores = torch.randint(0, 4, (num_users, num_movies), generator=generator).float()
    else:
        scores = torch.randn(num_users, num_movies, generator=generator)
    train_users = torch.randint(0, num_users, (num_users * 8,), generator=generator)
    train_movies = torch.randint(0, num_movies, (num_users * 8,), generator=generator)
    test_users = torch.randint(0, num_users, (num_users * 5,), generator=generator)
    test_movies = torch.randint(0, num_movies, (num_users * 5,), generator=generator)
    test_ratings = torch.randint(1, 11, (num_users * 5,), generator=generator) / 2
    return scores, (train_users, train_movies, test_users, test_movies, test_ratings)


def reference(scores, train_users, train_movies, test_users, test_movies, test_ratings, ks, threshold, users=None):
    """The definitions, one user at a time, in plain Python."""
    num_movies = scores.shape[1]
    seen: dict[int, set[int]] = {}
    for user, movie in zip(train_users.tolist(), train_movies.tolist()):
        seen.setdefault(user, set()).add(movie)
    relevant: dict[int, set[int]] = {}
    for user, movie, rating in zip(test_users.tolist(), test_movies.tolist(), test_ratings.tolist()):
        if rating >= threshold and movie not in seen.get(user, set()):
            relevant.setdefault(user, set()).add(movie)
    evaluated = sorted(relevant) if users is None else sorted(users)
    sums: dict[str, float] = {}
    covered: dict[int, set[int]] = {k: set() for k in ks}
    for user in evaluated:
        rel = relevant[user]
        row = scores[user].tolist()
        ranked = sorted(range(num_movies), key=lambda m: (m in seen.get(user, set()), -row[m], m))
        for k in ks:
            top = ranked[:k]
            covered[k].update(m for m in top if m not in seen.get(user, set()))
            hits = [1.0 if m in rel else 0.0 for m in top]
            ideal = min(len(rel), k)
            values = {
                "precision": sum(hits) / k,
                "recall": sum(hits) / len(rel),
                "ndcg": sum(h / math.log2(i + 2) for i, h in enumerate(hits))
                / sum(1 / math.log2(i + 2) for i in range(ideal)),
                "hit_rate": float(any(hits)),
                "map": sum(sum(hits[: i + 1]) / (i + 1) * h for i, h in enumerate(hits)) / ideal,
            }
            for name, value in values.items():
                sums[f"{name}@{k}"] = sums.get(f"{name}@{k}", 0.0) + value
    result = {name: total / len(evaluated) for name, total in sums.items()}
    result.update({f"coverage@{k}": len(covered[k]) / num_movies for k in ks})
    result["num_users"] = len(evaluated)
    return result


@pytest.mark.parametrize("integer_scores", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_user_reference(seed, integer_scores):
    scores, data = random_data(seed=seed, integer_scores=integer_scores)
    ks = (1, 5, 10, 30)
    result = ranking_metrics(score_table(scores), scores.shape[1], *data, ks=ks, threshold=3.5, chunk_size=7)
    expected = reference(scores, *data, ks=ks, threshold=3.5)
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_chunk_size_does_not_change_the_result():
    scores, data = random_data(seed=3)
    one_by_one = ranking_metrics(score_table(scores), scores.shape[1], *data, ks=(1, 5, 10), chunk_size=1)
    all_at_once = ranking_metrics(score_table(scores), scores.shape[1], *data, ks=(1, 5, 10), chunk_size=1000)
    assert one_by_one == all_at_once  # bit-identical, not just close
    assert example(ks=(3, 1), chunk_size=1) == example(ks=(3, 1), chunk_size=1000)


def test_max_users_sample_is_seeded_and_independent_of_chunk_size():
    scores, data = random_data(num_users=60, seed=4)

    def run(seed: int, chunk_size: int):
        calls: list[torch.Tensor] = []
        result = ranking_metrics(
            score_table(scores, calls), scores.shape[1], *data, max_users=10, seed=seed, chunk_size=chunk_size
        )
        return result, torch.cat(calls).tolist()

    result, users = run(seed=0, chunk_size=3)
    assert result["num_users"] == 10 and len(users) == 10
    assert run(seed=0, chunk_size=3) == (result, users)
    assert run(seed=0, chunk_size=100) == (result, users)
    assert run(seed=1, chunk_size=3)[1] != users
    # The sample is evaluated exactly as those users alone would be.
    expected = reference(scores, *data, ks=(10,), threshold=4.0, users=users)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name


def test_max_users_larger_than_eligible_evaluates_everyone():
    assert example(ks=(3, 1), max_users=100) == example(ks=(3, 1))


def test_max_users_skips_candidates_left_without_relevant_movies():
    # 200 users each rate m0 5.0 in test, but users 0..179 saw m0 in training: 20 eligible users.
    # However the random order visits them, exactly the 20 eligible ones must be found.
    num_users = 200
    test = (torch.arange(num_users), torch.zeros(num_users, dtype=torch.int64), torch.full((num_users,), 5.0))
    train = (torch.arange(180), torch.zeros(180, dtype=torch.int64))
    calls: list[torch.Tensor] = []
    scores = torch.rand(num_users, 4)
    for seed in range(3):
        calls.clear()
        result = ranking_metrics(score_table(scores, calls), 4, *train, *test, ks=(1,), max_users=20, seed=seed)
        assert result["num_users"] == 20
        assert torch.cat(calls).tolist() == list(range(180, 200))
    calls.clear()
    result = ranking_metrics(score_table(scores, calls), 4, *train, *test, ks=(1,), max_users=5, seed=0)
    assert result["num_users"] == 5
    assert all(user >= 180 for user in torch.cat(calls).tolist())


def test_score_users_gets_ascending_cpu_int64_chunks():
    calls: list[torch.Tensor] = []
    ranking_metrics(score_table(SCORES, calls), 6, TRAIN_USERS, TRAIN_MOVIES, TEST_USERS, TEST_MOVIES, TEST_RATINGS,
                    ks=(1,), chunk_size=2)  # fmt: skip
    assert [c.tolist() for c in calls] == [[0, 1], [2]]
    assert all(c.dtype == torch.int64 and c.device.type == "cpu" for c in calls)


def test_int32_inputs_work():
    scores, data = random_data(seed=5)
    as_int32 = [t.int() if not t.is_floating_point() else t for t in data]
    assert ranking_metrics(score_table(scores), scores.shape[1], *as_int32) == ranking_metrics(
        score_table(scores), scores.shape[1], *data
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": (7,)}, "num_movies"),
        ({"ks": (0,)}, "num_movies"),
        ({"ks": (1,), "chunk_size": 0}, "chunk_size"),
        ({"ks": (1,), "max_users": 0}, "max_users"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        example(**kwargs)


def test_bad_scores_are_reported():
    args = (6, TRAIN_USERS, TRAIN_MOVIES, TEST_USERS, TEST_MOVIES, TEST_RATINGS)
    with pytest.raises(ValueError, match="shape"):
        ranking_metrics(lambda users: torch.zeros(users.numel(), 5), *args, ks=(1,))
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(lambda users: torch.full((users.numel(), 6), math.nan), *args, ks=(1,))
    with pytest.raises(ValueError, match="test_movies"):
        ranking_metrics(
            score_table(SCORES), 6, TRAIN_USERS, TRAIN_MOVIES, TEST_USERS, TEST_MOVIES + 1, TEST_RATINGS, ks=(1,)
        )
