"""Ratings from any delimited file (or parquet table): columns chosen by header name or 0-based position."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mfrec.data.cache import cached_load
from mfrec.data.ratings import Ratings, parse_rating_scale
from mfrec.data.readers import (
    Column,
    TableFormat,
    build_ratings,
    read_parquet_ratings,
    read_parquet_titles,
    read_ratings,
    read_titles,
)
from mfrec.errors import ConfigError, DataError

PARQUET_SUFFIXES = (".parquet", ".pq")


class CsvRatings:
    """A ratings file of one (user, movie, rating[, timestamp]) record per line, plus optional titles.

    Columns are header names (``header=True``) or 0-based positions. Ids must be integers unless
    ``id_type="str"`` (then any non-empty text). ``rating_scale=None`` takes the observed min and max;
    otherwise every rating must lie in it. ``titles_path`` names a movies file (same separator, header
    and encoding unless ``titles_sep`` / ``titles_header`` say otherwise). A path ending in ``.parquet``
    is read with pyarrow. ``timestamp_col`` is off by default; set it to keep timestamps (temporal
    splits, and "latest wins" for repeated (user, movie) pairs).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sep: str = ",",
        header: bool = True,
        user_col: Column = "userId",
        item_col: Column = "movieId",
        rating_col: Column = "rating",
        timestamp_col: Column | None = None,
        rating_scale: Sequence[float] | None = (0.5, 5.0),
        titles_path: str | os.PathLike | None = None,
        title_item_col: Column = "movieId",
        title_col: Column = "title",
        titles_sep: str | None = None,
        titles_header: bool | None = None,
        encoding: str = "utf-8",
        id_type: str = "int",
        cache: bool = True,
    ):
        if path is None or str(path) == "":
            raise ConfigError("data.source.path", "is required: the ratings file to read (CSV or parquet)")
        # A command line cannot easily pass a real tab: accept the two characters \t (and "tab").
        sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep) if isinstance(sep, str) else sep
        if not isinstance(sep, str) or not sep or sep in ("\n", "\r", '"'):
            raise ConfigError("data.source.sep", f"got {sep!r}; give the field separator, e.g. ',' or '\\t' or '::'")
        if id_type not in ("int", "str"):
            raise ConfigError("data.source.id_type", f"got {id_type!r}; valid: int, str")
        self.path = Path(path).expanduser()
        self.sep = sep
        self.header = bool(header)
        self.titles_path = Path(titles_path).expanduser() if titles_path not in (None, "") else None
        self.titles_sep = titles_sep if titles_sep is not None else sep
        self.titles_header = self.header if titles_header is None else bool(titles_header)
        self.encoding = encoding
        self.id_type = id_type
        self.cache = cache
        self.rating_scale = parse_rating_scale(rating_scale)
        parquet = self.path.suffix.lower() in PARQUET_SUFFIXES
        self.user_col = _column("user_col", user_col, self.header or parquet)
        self.item_col = _column("item_col", item_col, self.header or parquet)
        self.rating_col = _column("rating_col", rating_col, self.header or parquet)
        self.timestamp_col = None if timestamp_col is None else _column("timestamp_col", timestamp_col, self.header or parquet)
        # checked only when there is a titles file: the defaults are names
        titles_named_ok = self.titles_path is None or self.titles_header or self.titles_path.suffix.lower() in PARQUET_SUFFIXES
        self.title_item_col = _column("title_item_col", title_item_col, titles_named_ok)
        self.title_col = _column("title_col", title_col, titles_named_ok)

    def load(self) -> Ratings:
        """Parse the file (or reuse the cache of an earlier parse) into Ratings with raw ids and titles."""
        if not self.path.is_file():
            raise DataError(f"{self.path} does not exist: data.source.path must name a ratings file (CSV or parquet)")
        inputs = [self.path]
        if self.titles_path is not None:
            if not self.titles_path.is_file():
                raise DataError(f"{self.titles_path} does not exist: data.source.titles_path must name a movies file, or be null")
            inputs.append(self.titles_path)
        options = {
            "source": "csv", "sep": self.sep, "header": self.header, "columns": [self.user_col, self.item_col, self.rating_col, self.timestamp_col],
            "rating_scale": self.rating_scale, "titles": [self.title_item_col, self.title_col, self.titles_sep, self.titles_header],
            "encoding": self.encoding, "id_type": self.id_type,
        }
        return cached_load(inputs, options, self._parse, enabled=self.cache)

    def _parse(self) -> Ratings:
        columns = dict(user_col=self.user_col, item_col=self.item_col, rating_col=self.rating_col, timestamp_col=self.timestamp_col)
        if self.path.suffix.lower() in PARQUET_SUFFIXES:
            raw = read_parquet_ratings(self.path, rating_scale=self.rating_scale, id_type=self.id_type, **columns)
        else:
            fmt = TableFormat(sep=self.sep, header=self.header, encoding=self.encoding, quoting=True)
            raw = read_ratings(self.path, fmt, rating_scale=self.rating_scale, id_type=self.id_type, **columns)
        titles = None
        if self.titles_path is not None:
            if self.titles_path.suffix.lower() in PARQUET_SUFFIXES:
                titles = read_parquet_titles(self.titles_path, self.title_item_col, self.title_col, self.id_type)
            else:
                fmt = TableFormat(sep=self.titles_sep, header=self.titles_header, encoding=self.encoding, quoting=True)
                titles = read_titles(self.titles_path, fmt, self.title_item_col, self.title_col, self.id_type)
        return build_ratings(raw, titles, self.rating_scale)


def _column(key: str, value: object, named_ok: bool) -> Column:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"data.source.{key}", f"got {value!r}; give a header name or a 0-based position")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"data.source.{key}", f"got {value}; positions count from 0")
    if isinstance(value, str) and not named_ok:
        raise ConfigError(f"data.source.{key}", f"is the name {value!r} but the file has no header (header=false); give a 0-based position")
    return value
