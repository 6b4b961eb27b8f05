"""Full-ranking top-K metrics in plain torch (rating error, RMSE/MAE, comes from torchmetrics in MFModule).

The ranking metrics follow RecBole's definitions with binary relevance and are computed over the
*full* catalogue (every movie is a candidate, not a sampled subset), which is the protocol that
matches how the model is used: :func:`mfrec.recommend.rank_movies` also ranks every movie.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["ranking_metrics", "top_k_lowest_index_first"]

# Train pairs are scanned in blocks this long so that the temporaries stay small (a few tens of MB)
# however large the training set is.
_SCAN_BLOCK = 1 << 22
# Rows whose top-K boundary falls inside a run of equal scores are re-ranked this many at a time:
# the re-ranking needs an int64 copy of each such row.
_TIE_ROWS = 128


@torch.no_grad()
def ranking_metrics(
    score_users: Callable[[torch.Tensor], torch.Tensor],
    num_movies: int,
    train_users: torch.Tensor,
    train_movies: torch.Tensor,
    test_users: torch.Tensor,
    test_movies: torch.Tensor,
    test_ratings: torch.Tensor,
    ks: Sequence[int] = (10,),
    threshold: float = 4.0,
    chunk_size: int = 1024,
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Full-ranking top-K metrics, averaged over the users that have something relevant to find.

    ``score_users(users)`` gets a CPU int64 tensor of ``B`` user indices (ascending) and returns
    their scores for every movie, shape ``[B, num_movies]`` on any device; it is called once per
    chunk of ``chunk_size`` users, so memory stays O(chunk_size * num_movies). The returned tensor is
    modified in place (seen movies are set to -inf): return a fresh tensor, e.g. a matmul result.

    Relevance is binary: a test movie is relevant when its rating is ``>= threshold``. Each user's
    ranking leaves out the movies that user has in the training pairs (set to -inf). A movie that is
    both seen in training and relevant in test is likewise never ranked, and it is also dropped from
    the user's relevant set: the ranker is not allowed to recommend it, so counting it would cap
    recall below 1 for no fault of the model. A (user, movie) pair repeated in test counts once.

    Only users with at least one relevant test movie (after that removal) are evaluated. With
    ``max_users`` a uniform random sample of that many of them is evaluated; the sample depends
    only on ``seed`` and the data, not on ``chunk_size``.

    Ties in scores are broken by the lower movie index, both inside the top K and at its boundary,
    so the result never depends on how ``torch.topk`` orders equal values.

    Returns, for each K in ``ks``: ``precision@K`` (hits / K), ``recall@K`` (hits / |relevant|),
    ``ndcg@K`` (gains 1/log2(rank + 1), ideal DCG over min(|relevant|, K) items), ``hit_rate@K``
    (1 if any hit), ``map@K`` (sum over ranks i <= K of precision@i * rel_i, over
    min(|relevant|, K)), all averaged over the evaluated users; ``coverage@K`` (distinct movies
    with a finite score in any evaluated user's top K, over ``num_movies``); and ``num_users``
    evaluated. With no user to evaluate the averages are NaN, coverage is 0 and ``num_users`` is 0.
    """
    ks = sorted({int(k) for k in ks})
    _check_arguments(
        num_movies, train_users, train_movies, test_users, test_movies, test_ratings, ks, chunk_size, max_users
    )
    k_max = ks[-1]
    train_users, train_movies = train_users.cpu(), train_movies.cpu()

    test_users, test_movies, test_ratings = test_users.cpu(), test_movies.cpu(), test_ratings.cpu()
    relevant_keys = _relevant_keys(test_users, test_movies, test_ratings, threshold, num_movies)
    users, train_keys, relevant_keys = _select_users(
        relevant_keys, train_users, train_movies, num_movies, max_users, seed
    )

    hits_parts: list[torch.Tensor] = []
    num_relevant_parts: list[torch.Tensor] = []
    covered = {k: torch.zeros(num_movies, dtype=torch.bool) for k in ks}
    for start in range(0, users.numel(), chunk_size):
        chunk = users[start : start + chunk_size]
        top, finite = _chunk_top_k(score_users, chunk, train_keys, num_movies, k_max)
        hits, num_relevant = _chunk_hits(chunk, top, relevant_keys, num_movies)
        hits_parts.append(hits)
        num_relevant_parts.append(num_relevant)
        for k in ks:
            covered[k][top[:, :k][finite[:, :k]]] = True

    if users.numel() == 0:
        hits_all = torch.zeros(0, k_max, dtype=torch.bool)
        num_relevant_all = torch.zeros(0, dtype=torch.int64)
    else:
        hits_all, num_relevant_all = torch.cat(hits_parts), torch.cat(num_relevant_parts)
    result = _average_metrics(hits_all, num_relevant_all, ks)
    for k in ks:
        result[f"coverage@{k}"] = covered[k].sum().item() / num_movies
    result["num_users"] = int(users.numel())
    return result


def _check_arguments(
    num_movies: int,
    train_users: torch.Tensor,
    train_movies: torch.Tensor,
    test_users: torch.Tensor,
    test_movies: torch.Tensor,
    test_ratings: torch.Tensor,
    ks: list[int],
    chunk_size: int,
    max_users: int | None,
) -> None:
    """Fail early with a clear message rather than deep inside an indexing op."""
    if num_movies < 1:
        raise ValueError(f"num_movies must be >= 1, got {num_movies}")
    if not ks or ks[0] < 1 or ks[-1] > num_movies:
        raise ValueError(f"every K in ks must be in [1, num_movies={num_movies}], got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be >= 1 or None, got {max_users}")
    if train_users.shape != train_movies.shape or train_users.dim() != 1:
        raise ValueError("train_users and train_movies must be 1-d tensors of the same length")
    if not (test_users.shape == test_movies.shape == test_ratings.shape) or test_users.dim() != 1:
        raise ValueError("test_users, test_movies and test_ratings must be 1-d tensors of the same length")
    for name, movies in (("train_movies", train_movies), ("test_movies", test_movies)):
        if movies.numel() and (movies.min() < 0 or movies.max() >= num_movies):
            raise ValueError(f"{name} holds indices outside [0, num_movies={num_movies})")
    for name, users in (("train_users", train_users), ("test_users", test_users)):
        if users.numel() and users.min() < 0:
            raise ValueError(f"{name} holds negative indices")


def _relevant_keys(
    users: torch.Tensor, movies: torch.Tensor, ratings: torch.Tensor, threshold: float, num_movies: int
) -> torch.Tensor:
    """Sorted, de-duplicated ``user * num_movies + movie`` keys of the relevant test pairs.

    One int64 key per pair makes "pairs of users in a range" a contiguous slice of a sorted array,
    found with ``searchsorted``, instead of a per-user Python loop.
    """
    relevant = ratings >= threshold
    keys = users[relevant].long() * num_movies + movies[relevant].long()
    return torch.unique(keys)


def _select_users(
    relevant_keys: torch.Tensor,
    train_users: torch.Tensor,
    train_movies: torch.Tensor,
    num_movies: int,
    max_users: int | None,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The users to evaluate (ascending), their sorted train keys and their sorted relevant keys.

    Candidates (users with a relevant test pair) are visited in a seeded random order and the first
    ``max_users`` that keep a relevant pair once their training pairs are removed are taken: that is
    a uniform sample of the eligible users. Only the visited users' training pairs are gathered
    (one pass over the train tensors per round, usually a single round), so a 10,000-user sample
    of a 25M-pair training set never sorts the whole set.
    """
    relevant_users = relevant_keys // num_movies
    candidates = torch.unique_consecutive(relevant_users)  # keys are sorted, so users are too
    if max_users is not None and max_users < candidates.numel():
        generator = torch.Generator().manual_seed(seed)
        candidates = candidates[torch.randperm(candidates.numel(), generator=generator)]
        wanted = max_users
    else:
        wanted = candidates.numel()
    num_user_slots = int(candidates.max()) + 1 if candidates.numel() else 0
    if train_users.numel():
        num_user_slots = max(num_user_slots, int(train_users.max()) + 1)

    kept_users: list[torch.Tensor] = []
    kept_train: list[torch.Tensor] = []
    kept_relevant: list[torch.Tensor] = []
    position, found, batch = 0, 0, wanted
    while found < wanted and position < candidates.numel():
        visit = candidates[position : position + batch]
        position += visit.numel()
        member = torch.zeros(num_user_slots, dtype=torch.bool)
        member[visit] = True
        train_keys = _gather_train_keys(member, train_users, train_movies, num_movies)
        relevant = relevant_keys[member[relevant_users]]
        relevant = relevant[~_is_in_sorted(relevant, train_keys)]
        eligible = torch.zeros(num_user_slots, dtype=torch.bool)
        eligible[relevant // num_movies] = True
        visit = visit[eligible[visit]][: wanted - found]  # keeps the random order: first ones win
        found += visit.numel()
        member.zero_()
        member[visit] = True
        kept_users.append(visit)
        kept_train.append(train_keys[member[train_keys // num_movies]])
        kept_relevant.append(relevant[member[relevant // num_movies]])
        # Next round: enough candidates for the rest at the eligibility rate seen so far, plus slack.
        rate = max(found, 1) / position
        batch = max(64, math.ceil((wanted - found) / rate * 1.2))

    if not kept_users:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, empty
    users = torch.cat(kept_users).sort().values
    return users, torch.cat(kept_train).sort().values, torch.cat(kept_relevant).sort().values


def _gather_train_keys(
    member: torch.Tensor, train_users: torch.Tensor, train_movies: torch.Tensor, num_movies: int
) -> torch.Tensor:
    """Sorted, de-duplicated keys of the training pairs whose user is flagged in ``member``."""
    parts = []
    for start in range(0, train_users.numel(), _SCAN_BLOCK):
        block_users = train_users[start : start + _SCAN_BLOCK]
        rows = member[block_users.long()].nonzero().squeeze(1)
        block_movies = train_movies[start : start + _SCAN_BLOCK]
        parts.append(block_users[rows].long() * num_movies + block_movies[rows].long())
    if not parts:
        return torch.zeros(0, dtype=torch.int64)
    return torch.unique(torch.cat(parts))


def _is_in_sorted(values: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """``values[i] in sorted_keys`` for each i, by binary search."""
    if sorted_keys.numel() == 0:
        return torch.zeros(values.shape, dtype=torch.bool)
    position = torch.searchsorted(sorted_keys, values).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[position] == values


def _key_range(sorted_keys: torch.Tensor, users: torch.Tensor, num_movies: int) -> torch.Tensor:
    """The slice of ``sorted_keys`` that belongs to the ascending ``users``."""
    bounds = torch.stack([users[0] * num_movies, (users[-1] + 1) * num_movies])
    start, end = torch.searchsorted(sorted_keys, bounds).tolist()
    return sorted_keys[start:end]


def _chunk_top_k(
    score_users: Callable[[torch.Tensor], torch.Tensor],
    users: torch.Tensor,
    train_keys: torch.Tensor,
    num_movies: int,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` movie indices ``[B, k]`` (CPU) of a chunk of users, seen movies excluded.

    Also returns which of them have a finite score: when a user has seen all but fewer than ``k``
    movies, the list is padded with seen (-inf) movies that are not real recommendations.
    """
    scores = score_users(users)
    if scores.shape != (users.numel(), num_movies):
        raise ValueError(
            f"score_users returned shape {tuple(scores.shape)} for {users.numel()} users, "
            f"expected ({users.numel()}, {num_movies})"
        )
    seen = _key_range(train_keys, users, num_movies)
    if seen.numel():
        rows = torch.searchsorted(users, seen // num_movies)
        scores[rows.to(scores.device), (seen % num_movies).to(scores.device)] = float("-inf")
    top, values = top_k_lowest_index_first(scores, k)
    if torch.isnan(values).any():
        raise ValueError("score_users returned NaN scores")
    return top.cpu(), torch.isfinite(values).cpu()


def top_k_lowest_index_first(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top ``k`` by (score descending, movie index ascending): indices and scores.

    ``torch.topk`` picks arbitrarily among equal values, so a tie that straddles the K-th place is
    resolved here: asking for ``k + 1`` values shows whether the (k+1)-th equals the k-th, and only
    those rows (rare with float scores) are re-selected exactly.
    """
    num_movies = scores.shape[1]
    values, top = torch.topk(scores, min(k + 1, num_movies), dim=1)
    if values.shape[1] > k:
        tied_rows = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
        values, top = values[:, :k], top[:, :k].clone()
        for start in range(0, tied_rows.numel(), _TIE_ROWS):
            rows = tied_rows[start : start + _TIE_ROWS]
            row_scores = scores[rows]
            kth = values[rows, k - 1 :]
            above = row_scores > kth
            at_kth = row_scores == kth
            still_needed = k - above.sum(1, keepdim=True)
            chosen = above | (at_kth & (at_kth.cumsum(1) <= still_needed))
            top[rows] = chosen.nonzero()[:, 1].view(-1, k)  # nonzero is row-major, k per row
    # Order inside the top k: sort by index, then a stable sort by score keeps lower indices first.
    top = top.sort(dim=1).values
    order = scores.gather(1, top).sort(dim=1, descending=True, stable=True).indices
    top = top.gather(1, order)
    return top, scores.gather(1, top)


def _chunk_hits(
    users: torch.Tensor, top: torch.Tensor, relevant_keys: torch.Tensor, num_movies: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``hits[b, i]``: is the movie at rank i+1 relevant for ``users[b]``; and each user's |relevant|."""
    relevant = _key_range(relevant_keys, users, num_movies)
    num_relevant = torch.bincount(torch.searchsorted(users, relevant // num_movies), minlength=users.numel())
    hits = _is_in_sorted(users[:, None] * num_movies + top, relevant)
    return hits, num_relevant


def _average_metrics(hits: torch.Tensor, num_relevant: torch.Tensor, ks: list[int]) -> dict[str, float]:
    """Per-user precision/recall/NDCG/hit rate/MAP at each K, averaged in float64.

    Done once over all users (not per chunk) so the result is bit-identical for any chunk size.
    """
    result: dict[str, float] = {}
    k_max = ks[-1]
    hits = hits.to(torch.float64)
    num_relevant = num_relevant.to(torch.float64)
    ranks = torch.arange(1, k_max + 1, dtype=torch.float64)
    discounts = 1.0 / torch.log2(ranks + 1)
    ideal_dcg = discounts.cumsum(0)  # ideal_dcg[n - 1]: DCG of n hits at the top
    precision_at_i = hits.cumsum(1) / ranks
    empty = hits.shape[0] == 0
    for k in ks:
        top = hits[:, :k]
        num_hits = top.sum(1)
        ideal_count = num_relevant.clamp(max=k)
        per_user = {
            "precision": num_hits / k,
            "recall": num_hits / num_relevant,
            "ndcg": (top * discounts[:k]).sum(1) / ideal_dcg[ideal_count.long() - 1],
            "hit_rate": (num_hits > 0).to(torch.float64),
            "map": (precision_at_i[:, :k] * top).sum(1) / ideal_count,
        }
        for name, values in per_user.items():
            result[f"{name}@{k}"] = math.nan if empty else values.mean().item()
    return result
