"""Top-N recommendations from a trained model: the seed's report, and the mfrec-recommend command."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig

from mfrec.app import CONFIG_DIR, run_command
from mfrec.checkpoint import load_module
from mfrec.data.ratings import Ratings
from mfrec.errors import ConfigError
from mfrec.metrics import top_k_lowest_index_first
from mfrec.model import MatrixFactorization
from mfrec.module import MFModule


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
    predictions = model.predict(torch.tensor([user] * num_movies), torch.arange(num_movies))
    candidates = range(num_movies)
    if seen is not None:
        rated = set(seen.movies[seen.users == user].tolist())
        candidates = [movie for movie in candidates if movie not in rated]
    scores = predictions.tolist()
    # Ranked on the raw predictions: clipping first would tie every movie above the scale's top.
    ranked = sorted(((movie, scores[movie]) for movie in candidates), key=lambda item: item[1], reverse=True)
    ranked = ranked if top_k is None else ranked[:top_k]
    if clip is not None:
        ranked = [(movie, min(max(score, clip[0]), clip[1])) for movie, score in ranked]
    return ranked


def format_report(user_id: object, ranked: list[tuple[int, float]], titles: list[str]) -> str:
    """The seed's printout: a heading, then one ``Title: Predicted rating 4.56`` line per movie."""
    lines = [f"Recommended movies for user {user_id}:"]
    lines += [f"{titles[movie]}: Predicted rating {score:.2f}" for movie, score in ranked]
    return "\n".join(lines)


def format_metrics(metrics: dict[str, float], heading: str) -> str:
    """A two-column table of metric names and values, in name order."""
    width = max(map(len, metrics), default=0)
    return "\n".join([heading] + [f"  {name:<{width}}  {value:.4f}" for name, value in sorted(metrics.items())])


@torch.no_grad()
def top_k(
    module: MFModule, users: torch.Tensor, k: int, exclude_seen: bool = True, clip: bool = True, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best movies for each user index: (movie indices, predicted ratings), both [len(users), k].

    Users are scored in chunks against every movie at once (one matrix product per chunk); movies a
    user rated in training are excluded when ``exclude_seen``. Fewer than k candidates pad with -1.
    """
    num_movies = module.hparams.num_movies
    k = min(k, num_movies)
    seen_users, seen_movies = module.seen_pairs() if exclude_seen else (None, None)
    low_high = module.data_info.get("rating_scale") if clip else None
    all_movies, all_scores = [], []
    for chunk in users.split(chunk_size):
        scores = module.model.score_all(chunk)
        if seen_users is not None:
            # seen_users is sorted: each chunk user's training movies are one slice of seen_movies
            starts = torch.searchsorted(seen_users, chunk)
            ends = torch.searchsorted(seen_users, chunk, right=True)
            counts = ends - starts
            rows = torch.repeat_interleave(torch.arange(len(chunk)), counts)
            position_in_row = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
            scores[rows, seen_movies[starts[rows] + position_in_row]] = -torch.inf
        # Ranked on raw scores (clipped only for display), ties to the lower movie index as in the metrics.
        movies, values = top_k_lowest_index_first(scores, k)
        movies[values == -torch.inf] = -1
        if low_high is not None:
            values = values.clamp(*low_high)
        all_movies.append(movies)
        all_scores.append(values)
    return torch.cat(all_movies), torch.cat(all_scores)


def resolve_users(user_ids: list, raw_users: list, key: str = "users") -> list[tuple[object, int]]:
    """(raw id, index) for each requested user; an unknown id is a ConfigError on ``key``."""
    lookup = {raw: index for index, raw in enumerate(user_ids)}
    found = []
    for raw in raw_users:
        # A command line gives 196 where a file gave "196", or the other way round.
        candidates = [raw, str(raw)] + ([int(raw)] if isinstance(raw, str) and raw.lstrip("-").isdigit() else [])
        index = next((lookup[c] for c in candidates if c in lookup), None)
        if index is None:
            sample = ", ".join(map(str, user_ids[:5]))
            raise ConfigError(key, f"user {raw!r} is not in the data ({len(user_ids)} users, e.g. {sample})")
        found.append((raw, index))
    return found


def recommend(cfg: DictConfig) -> None:
    """mfrec-recommend: print a table per user, or write every user's top-k to ``output`` as CSV."""
    if not isinstance(cfg.k, int) or isinstance(cfg.k, bool) or cfg.k < 1:
        raise ConfigError("k", f"got {cfg.k!r}; valid: an integer >= 1")
    if not isinstance(cfg.users, ListConfig):
        raise ConfigError("users", f"got {cfg.users!r}; valid: a list of user ids, e.g. users=[196,42]")
    module = load_module(cfg.ckpt_path)
    info = module.data_info
    requested = resolve_users(info["user_ids"], list(cfg.users)) if cfg.users else None
    if requested is None and not cfg.output:
        raise ConfigError("users", "give users=[id,...] to print, or output=recs.csv to write all users' top-k")
    pairs = requested if requested is not None else [(raw, index) for index, raw in enumerate(info["user_ids"])]
    indices = torch.tensor([index for _, index in pairs], dtype=torch.int64)
    movies, scores = top_k(module, indices, cfg.k, exclude_seen=cfg.exclude_seen, clip=cfg.clip)
    if cfg.output:
        _write_csv(Path(cfg.output), pairs, movies, scores, info)
        print(f"Wrote top-{cfg.k} recommendations for {len(pairs)} users to {cfg.output}")
    if requested is not None:
        for (raw, _), user_movies, user_scores in zip(pairs, movies.tolist(), scores.tolist()):
            print(format_table(raw, user_movies, user_scores, info))


def format_table(raw_user: object, movies: list[int], scores: list[float], info: dict) -> str:
    rows = [(rank, info["movie_ids"][movie], info["movie_titles"][movie], score)
            for rank, (movie, score) in enumerate(zip(movies, scores), start=1) if movie >= 0]
    id_width = max([len("movie"), *(len(str(movie_id)) for _, movie_id, _, _ in rows)])
    title_width = max([len("title"), *(len(title) for _, _, title, _ in rows)])
    lines = [f"Top {len(rows)} movies for user {raw_user}:", f"{'rank':>4}  {'movie':>{id_width}}  {'title':<{title_width}}  predicted"]
    lines += [f"{rank:>4}  {movie_id!s:>{id_width}}  {title:<{title_width}}  {score:9.2f}" for rank, movie_id, title, score in rows]
    return "\n".join(lines)


def _write_csv(path: Path, pairs: list, movies: torch.Tensor, scores: torch.Tensor, info: dict) -> None:
    """All rows to a temporary file first, renamed into place: no half-written output on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["user_id", "rank", "movie_id", "title", "predicted_rating"])
        for (raw, _), user_movies, user_scores in zip(pairs, movies.tolist(), scores.tolist()):
            for rank, (movie, score) in enumerate(zip(user_movies, user_scores), start=1):
                if movie >= 0:
                    writer.writerow([raw, rank, info["movie_ids"][movie], info["movie_titles"][movie], f"{score:.4f}"])
    os.replace(temporary, path)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="recommend")
def main(cfg: DictConfig) -> None:
    run_command("mfrec-recommend", lambda: recommend(cfg))


if __name__ == "__main__":
    main()
