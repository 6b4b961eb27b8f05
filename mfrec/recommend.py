"""Top-N recommendations from a trained model, in the seed's report format."""

from __future__ import annotations

import torch

from mfrec.data.ratings import Ratings
from mfrec.model import MatrixFactorization


@torch.no_grad()
def rank_movies(
    model: MatrixFactorization,
    user: int,
    seen: Ratings | None = None,
    top_k: int | None = None,
    clip: tuple[float, float] | None = None,
) -> list[tuple[int, float]]:
    """(movie index, predicted rating) for every movie, best first.

    Movies ``user`` rated in ``seen`` are left out; ``top_k`` keeps the first k; ``clip`` bounds the
    predictions to a rating scale. Ties keep movie order, as the seed's ``sorted`` does.
    """
    num_movies = model.movie_embedding.num_embeddings
    # The seed's query, batched over all movies the same way, so the numbers match it exactly.
    predictions = model(torch.tensor([user] * num_movies), torch.arange(num_movies))
    if clip is not None:
        predictions = predictions.clamp(*clip)
    candidates = range(num_movies)
    if seen is not None:
        rated = set(seen.movies[seen.users == user].tolist())
        candidates = [movie for movie in candidates if movie not in rated]
    scores = predictions.tolist()
    ranked = sorted(((movie, scores[movie]) for movie in candidates), key=lambda item: item[1], reverse=True)
    return ranked if top_k is None else ranked[:top_k]


def format_report(user_id: object, ranked: list[tuple[int, float]], titles: list[str]) -> str:
    """The seed's printout: a heading, then one ``Title: Predicted rating 4.56`` line per movie."""
    lines = [f"Recommended movies for user {user_id}:"]
    lines += [f"{titles[movie]}: Predicted rating {score:.2f}" for movie, score in ranked]
    return "\n".join(lines)
