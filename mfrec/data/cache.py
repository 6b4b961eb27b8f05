"""A cache of parsed ratings next to the data, so that a second load skips parsing (seconds -> a fraction).

The cache file's name carries a hash of everything the parse depends on: each input file's absolute
path, size and modification time, the parser options, and ``FORMAT_VERSION`` (bump it whenever the
parser's output changes). Editing a file therefore misses the cache and parses afresh, and the stale
file is removed once its replacement is written.

Files go to ``<data folder>/.mfrec-cache/``; where that folder cannot be written (a read-only shared
dataset) they go to ``$MFREC_CACHE_DIR`` or ``~/.cache/mfrec/parsed/``. Caching is an optimisation
only: any failure to read or write a cache is logged and the load carries on. Files are written to a
temporary name and renamed, so a crash or a failed parse never leaves a partial cache behind; they
hold plain tensors, lists and dicts read back with ``torch.load(weights_only=True)``, so a cache file
cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from mfrec.data.ratings import Ratings

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CACHE_DIR_ENV = "MFREC_CACHE_DIR"
LOCAL_DIR_NAME = ".mfrec-cache"


def fallback_dir() -> Path:
    """Where caches go when the data folder is read-only: ``$MFREC_CACHE_DIR`` or ``~/.cache/mfrec/parsed``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mfrec" / "parsed"


def cache_key(inputs: Sequence[Path], options: Mapping) -> str:
    """A hex digest of the inputs' identities (path, size, mtime) and the parser options."""
    files = []
    for path in inputs:
        stat = Path(path).stat()
        files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    description = {"version": FORMAT_VERSION, "files": files, "options": dict(options)}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def cached_load(inputs: Sequence[Path], options: Mapping, parse: Callable[[], Ratings], enabled: bool = True) -> Ratings:
    """``parse()``'s Ratings, from the cache when the inputs and options are unchanged, else parsed and stored."""
    if not enabled:
        return parse()
    inputs = [Path(path) for path in inputs]
    try:
        key = cache_key(inputs, options)
    except OSError:  # an input vanished: let the parser report it
        return parse()
    family = _family(inputs, options)
    name = f"{inputs[0].name}-{family}-{key[:20]}.pt"
    places = _places(inputs[0])
    for folder in places:
        ratings = _read(folder / name)
        if ratings is not None:
            log.debug("loaded parsed ratings from %s", folder / name)
            return ratings
    ratings = parse()
    payload = _payload(ratings)
    for folder in places:
        if _write(folder, name, payload):
            _remove_stale(folder, f"{inputs[0].name}-{family}-", keep=name)
            break
    else:
        log.warning("could not cache the parsed ratings of %s (tried %s); the next load will parse again",
                    inputs[0], ", ".join(str(folder) for folder in places))
    return ratings


def _family(inputs: Sequence[Path], options: Mapping) -> str:
    """A digest of what stays the same when a file is edited: caches of older versions share it."""
    description = {"files": [str(Path(path).resolve()) for path in inputs], "options": dict(options)}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _places(first_input: Path) -> list[Path]:
    local = first_input.resolve().parent / LOCAL_DIR_NAME
    try:
        fallback = fallback_dir().resolve()
    except (RuntimeError, OSError):  # no home directory to fall back to
        return [local]
    return [local] if fallback == local else [local, fallback]


def _payload(ratings: Ratings) -> dict:
    def compact(index: torch.Tensor) -> torch.Tensor:  # half the bytes to write and read back
        return index.to(torch.int32) if len(index) and int(index.max()) < 2**31 else index

    return {
        "version": FORMAT_VERSION,
        "users": compact(ratings.users),
        "movies": compact(ratings.movies),
        "ratings": ratings.ratings,
        "timestamps": ratings.timestamps,
        "user_ids": list(ratings.user_ids),
        "movie_ids": list(ratings.movie_ids),
        "movie_titles": list(ratings.movie_titles),
        "rating_scale": [float(ratings.rating_scale[0]), float(ratings.rating_scale[1])],
    }


def _read(path: Path) -> Ratings | None:
    """The Ratings in a cache file, or None if it is absent, unreadable or not what this version writes."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        if not isinstance(payload, dict) or payload.get("version") != FORMAT_VERSION:
            raise ValueError("unexpected content")
        users, movies = payload["users"].to(torch.int64), payload["movies"].to(torch.int64)
        ratings, timestamps = payload["ratings"], payload["timestamps"]
        user_ids, movie_ids, titles = payload["user_ids"], payload["movie_ids"], payload["movie_titles"]
        if not (
            ratings.dtype == torch.float32
            and len(users) == len(movies) == len(ratings)
            and (timestamps is None or (timestamps.dtype == torch.int64 and len(timestamps) == len(ratings)))
            and len(titles) == len(movie_ids)
            and (len(users) == 0 or (int(users.max()) < len(user_ids) and int(movies.max()) < len(movie_ids)))
        ):
            raise ValueError("inconsistent content")
        return Ratings(
            users=users, movies=movies, ratings=ratings, user_ids=list(user_ids), movie_ids=list(movie_ids),
            movie_titles=list(titles), rating_scale=tuple(payload["rating_scale"]), timestamps=timestamps,
        )
    except Exception as error:  # any damage means "parse again"; the rewrite replaces the file
        log.warning("ignoring the unreadable cache file %s (%s); parsing again", path, error)
        return None


def _write(folder: Path, name: str, payload: dict) -> bool:
    """Write ``payload`` to ``folder/name`` atomically; False (and nothing left behind) on any failure."""
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.replace(temporary, folder / name)
        return True
    except Exception as error:  # read-only folder, full disk, ...: caching is optional
        log.debug("cannot write a cache file in %s: %s", folder, error)
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        return False


def _remove_stale(folder: Path, prefix: str, keep: str) -> None:
    """Delete caches of earlier versions of the same files and options."""
    try:
        for old in folder.glob(f"{prefix}*.pt"):
            if old.name != keep:
                old.unlink(missing_ok=True)
    except OSError:
        pass
