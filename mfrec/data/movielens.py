"""MovieLens releases read from disk: ratings, titles, and ml-100k's predefined train/test folds.

Each release keeps its own layout (tab / pipe / '::' / CSV, latin-1 or utf-8, header or not); the
table in ``releases.py`` says which, and ``readers.py`` parses all of them strictly. Parsed tensors are
cached next to the files (``cache.py``), so only the first load of a release pays for parsing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mfrec.data.cache import cached_load
from mfrec.data.download import default_data_root, ensure_release, missing_files
from mfrec.data.ratings import Ratings
from mfrec.data.readers import TableFormat, build_ratings, read_ratings, read_titles, record_line
from mfrec.data.releases import Release, get_release
from mfrec.errors import ConfigError, DataError

class MovieLens:
    """A MovieLens release under ``root``: ``<root>/<release folder>/<ratings file>`` and its movies file.

    ``load()`` only reads; ``prepare()`` (called by the DataModule first) downloads a missing release
    when ``download`` is true. ``encoding`` overrides the release's encoding, should a copy differ.
    """

    def __init__(
        self,
        release: str = "ml-100k",
        root: str | os.PathLike | None = None,
        download: bool = True,
        encoding: str | None = None,
        cache: bool = True,
    ):
        self.release: Release = get_release(release)
        self.root = Path(root).expanduser() if root is not None else default_data_root()
        self.download = download
        self.encoding = encoding or self.release.encoding
        self.cache = cache

    @property
    def folder(self) -> Path:
        return self.root / self.release.folder

    def missing_files(self) -> list[str]:
        """The release's expected files that are not in its folder."""
        return missing_files(self.release, self.root)

    def prepare(self) -> Path:
        """Make sure the release is on disk (downloading it if allowed) and return its folder."""
        missing = self.missing_files()
        if not missing:
            return self.folder
        if not self.download:
            raise self._missing_error(missing)
        ensure_release(self.release, self.root)
        still_missing = self.missing_files()
        if still_missing:
            raise self._missing_error(still_missing)
        return self.folder

    def load(self) -> Ratings:
        """The release's ratings with raw ids and titles (never downloads: see ``prepare``)."""
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing)
        inputs = [self.folder / self.release.ratings_file, self.folder / self.release.movies_file]
        options = {"source": "movielens", "release": self.release.name, "encoding": self.encoding}
        return cached_load(inputs, options, self._parse, enabled=self.cache)

    def fold_indices(self, ratings: Ratings, fold: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions in ``ratings`` (as loaded) of a predefined fold's training and test ratings.

        ml-100k ships five cross-validation folds (``u1``..``u5``) and two with ten test ratings per
        user (``ua``, ``ub``), as ``<fold>.base`` / ``<fold>.test`` in u.data's format.
        """
        if not self.release.folds:
            raise ConfigError(
                "data.fold", f"MovieLens {self.release.name} has no predefined folds (only ml-100k has); "
                "use data.split=random, per_user or temporal",
            )
        if fold not in self.release.folds:
            raise ConfigError(
                "data.fold", f"unknown fold {fold!r} for MovieLens {self.release.name}; valid: {', '.join(self.release.folds)}"
            )
        train = self._fold_positions(ratings, self.folder / f"{fold}.base")
        test = self._fold_positions(ratings, self.folder / f"{fold}.test")
        return train, test

    # -- internals

    def _format(self, sep: str | None = None) -> TableFormat:
        sep = sep or self.release.separator
        return TableFormat(sep=sep, header=self.release.header, encoding=self.encoding, quoting=sep == ",")

    def _columns(self) -> dict:
        if self.release.header:
            return dict(user_col="userId", item_col="movieId", rating_col="rating", timestamp_col="timestamp")
        return dict(user_col=0, item_col=1, rating_col=2, timestamp_col=3)

    def _parse(self) -> Ratings:
        fmt = self._format()
        raw = read_ratings(
            self.folder / self.release.ratings_file, fmt, rating_scale=self.release.rating_scale,
            expected_fields=4, **self._columns(),
        )
        title_columns = ("movieId", "title") if self.release.header else (0, 1)
        movies_fmt = self._format(self.release.movies_separator)
        titles = read_titles(self.folder / self.release.movies_file, movies_fmt, *title_columns)
        return build_ratings(raw, titles, self.release.rating_scale)

    def _fold_positions(self, ratings: Ratings, path: Path) -> torch.Tensor:
        if not path.is_file():
            raise DataError(
                f"{path} is missing: the fold files come with the {self.release.name} release. {self._how_to_get()}"
            )
        raw = read_ratings(path, self._format(), rating_scale=self.release.rating_scale, expected_fields=4, **self._columns())
        users = pd.Index(ratings.user_ids).get_indexer(raw.users)
        movies = pd.Index(ratings.movie_ids).get_indexer(raw.items)
        loaded = ratings.users.numpy() * ratings.num_movies + ratings.movies.numpy()
        wanted = users.astype(np.int64) * ratings.num_movies + movies
        positions = pd.Index(loaded).get_indexer(wanted) if pd.Index(loaded).is_unique else np.full(len(wanted), -1)
        positions[(users < 0) | (movies < 0)] = -1
        unknown = np.flatnonzero(positions < 0)
        if len(unknown):
            row = int(unknown[0])
            line = record_line(path, self.encoding, header=False, record=row)
            raise DataError(
                f"{path}, line {line}: user {raw.users[row]} rated movie {raw.items[row]} here, but {self.release.ratings_file} "
                f"as loaded has no such rating ({len(unknown)} of the fold's {len(raw)} ratings are missing); "
                "the fold must come from the same release as the ratings"
            )
        return torch.from_numpy(positions.astype(np.int64))

    def _how_to_get(self) -> str:
        return (
            f"Get it with `mfrec-data download {self.release.name}` (or set data.source.download=true), "
            f"or set MFREC_DATA_DIR / paths.data_dir to the folder that holds {self.release.folder}/"
        )

    def _missing_error(self, missing: list[str]) -> DataError:
        expected = ", ".join(self.release.expected_files)
        return DataError(
            f"MovieLens {self.release.name} not found in {self.folder}: missing {', '.join(missing)} "
            f"(expected {expected}). {self._how_to_get()}."
        )
