"""Strict, fast parsing of delimited ratings and titles files: MovieLens' formats and plain CSV.

The fast path hands the whole file to pandas' C parser with fixed column types, so a 25M-line
file parses in seconds. When that parser (or a vectorised check after it) finds something wrong,
a second pass says *which* line is wrong and why: it re-reads the file in chunks, flags suspect rows
with vectorised checks, and examines only those from their text. Every error is a ``DataError`` that
names the file, the 1-based line number, the line itself, and what a valid line looks like. Errors
are rare, so only they pay for the second pass (seconds to tens of seconds on a 25M-line file).

Field counts: the C parser rejects a line with too many fields; one with too few leaves a typed
column empty, which the checks catch. Where columns go unread (``usecols``) and for titles files,
a numpy scan of the bytes counts each line's separators (quotes respected) instead.

Multi-character separators (MovieLens' ``::``) are not supported by pandas' C parser; the file's
bytes are read once and ``::`` is replaced by a control byte the file does not contain, which keeps
the C parser (python-engine parsing of ml-10m would take minutes).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal, Union

import numpy as np
import pandas as pd
import torch

from mfrec.data.ratings import Ratings, parse_rating_scale
from mfrec.errors import DataError

log = logging.getLogger(__name__)

Column = Union[str, int]  # a column by header name, or by 0-based position
IdType = Literal["int", "str"]

# Bytes that stand in for a multi-character separator; the first one absent from the file is used.
_SPARE_SEPARATORS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x01", b"\x02")
_DIAGNOSE_CHUNK = 1_000_000  # lines per chunk when looking for the line that failed
_MAX_LINE_SHOWN = 200
_INT_PATTERN = r"[+-]?\d{1,18}(?:\.0*)?"  # pandas' C parser also accepts "7.0" for an integer column
_WHITESPACE = np.array([9, 10, 13, 32], dtype=np.uint8)
_NA_WORDS = {"", "nan", "na", "n/a", "null", "none", "<na>", "-nan", "#n/a"}


@dataclass(frozen=True)
class TableFormat:
    """How a delimited text file is laid out."""

    sep: str = ","
    header: bool = True  # the first line names the columns
    encoding: str = "utf-8"
    quoting: bool = True  # '"' may quote a field (CSV); off for MovieLens' tab, pipe and '::' files

    def separator_name(self) -> str:
        return {"\t": "tab", ",": "comma", "|": "pipe", ";": "semicolon", " ": "space"}.get(self.sep, repr(self.sep))


@dataclass
class RawRatings:
    """Parsed columns before ids are numbered: raw ids, ratings and optional timestamps, in file order."""

    users: np.ndarray  # int64, or object (str) for string ids
    items: np.ndarray
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None  # int64
    source: str  # the file, for messages

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass(frozen=True)
class _Field:
    """One column the caller needs: where it is and what it must hold."""

    role: str  # "user", "item", "rating", "timestamp", "title"
    position: int
    kind: str  # "int", "str", "float", "text"
    label: str  # for messages, e.g. "user id"
    column: str | None = None  # the header name, when chosen by name


# --------------------------------------------------------------------------- ratings


def read_ratings(
    path: str | Path,
    fmt: TableFormat,
    user_col: Column = 0,
    item_col: Column = 1,
    rating_col: Column = 2,
    timestamp_col: Column | None = None,
    rating_scale: Sequence[float] | None = None,
    id_type: IdType = "int",
    expected_fields: int | None = None,
) -> RawRatings:
    """Parse a delimited ratings file into columns, rejecting any malformed line with its number and text.

    ``expected_fields`` (e.g. 4 for u.data) makes the field count itself part of the format; otherwise
    every line must have as many fields as the header (or the first line, without a header).
    """
    path = Path(path)
    table = _Table(path, fmt, expected_fields)
    fields = [
        table.field("user", user_col, id_type, "user id"),
        table.field("item", item_col, id_type, "movie id"),
        table.field("rating", rating_col, "float", "rating"),
    ]
    if timestamp_col is not None:
        fields.append(table.field("timestamp", timestamp_col, "int", "timestamp"))
    table.check_distinct(fields)
    scale = parse_rating_scale(rating_scale)
    if len(fields) < table.num_fields:  # the C parser checks field counts only when it reads every column
        table.check_field_counts(fields)

    dtypes = {table.name(f.position): _PANDAS_TYPES[f.kind] for f in fields}
    frame = table.read_fast(fields, dtypes, scale, keep_default_na=id_type == "int")
    columns = {f.role: frame[table.name(f.position)].to_numpy() for f in fields}
    del frame
    if len(columns["rating"]) == 0:
        raise table.no_rows_error()

    ratings = columns["rating"].astype(np.float64, copy=False)
    bad = ~np.isfinite(ratings)
    if scale is not None:
        bad |= (ratings < scale[0]) | (ratings > scale[1])
    if id_type == "str":
        for role in ("user", "item"):
            columns[role] = _clean_str_ids(columns[role])
            bad |= columns[role] == ""
    if bad.any():
        raise table.diagnose(fields, scale, hint=f"row {int(np.flatnonzero(bad)[0]) + 1} failed a check")

    return RawRatings(
        users=_owned(columns["user"]),
        items=_owned(columns["item"]),
        ratings=ratings.astype(np.float32),
        timestamps=_owned(columns["timestamp"]) if "timestamp" in columns else None,
        source=str(path),
    )


def read_titles(
    path: str | Path,
    fmt: TableFormat,
    item_col: Column = 0,
    title_col: Column = 1,
    id_type: IdType = "int",
    expected_fields: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a movies file into (raw movie ids, titles). Titles files are small, so all is read as text."""
    path = Path(path)
    table = _Table(path, fmt, expected_fields)
    fields = [table.field("item", item_col, id_type, "movie id"), table.field("title", title_col, "text", "title")]
    table.check_distinct(fields)
    table.check_field_counts(fields)
    frame = table.read_text()
    if frame is None:
        raise table.diagnose(fields, None, hint="the C parser rejected the file")
    problem = table.first_problem(table.data_start, _suspects(frame, table, fields, None), fields, None)
    if problem is not None:
        raise problem
    frame = frame[~_blank_rows(frame)]
    if len(frame) == 0:
        raise table.no_rows_error()
    ids = frame[table.name(fields[0].position)].to_numpy(dtype=object)
    if id_type == "int":
        ids = pd.to_numeric(pd.Series(ids, dtype=object).str.strip()).to_numpy().astype(np.int64)
    else:
        ids = _clean_str_ids(ids)
    titles = frame[table.name(fields[1].position)].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    return ids, titles


# --------------------------------------------------------------------------- parquet


def read_parquet_ratings(
    path: str | Path,
    user_col: Column = "userId",
    item_col: Column = "movieId",
    rating_col: Column = "rating",
    timestamp_col: Column | None = None,
    rating_scale: Sequence[float] | None = None,
    id_type: IdType = "int",
) -> RawRatings:
    """Read a parquet ratings table (needs pyarrow) with the same checks as the text files; rows are 1-based."""
    path = Path(path)
    frame, names = _read_parquet(path, [user_col, item_col, rating_col] + ([timestamp_col] if timestamp_col is not None else []))
    scale = parse_rating_scale(rating_scale)
    if len(frame) == 0:
        raise DataError(f"{path} holds no rows: expected one rating per row")
    users = _parquet_ids(frame, names[0], id_type, "user id", path)
    items = _parquet_ids(frame, names[1], id_type, "movie id", path)
    ratings = pd.to_numeric(frame[names[2]], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(ratings)
    if scale is not None:
        bad |= (ratings < scale[0]) | (ratings > scale[1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = _plain(frame[names[2]].iloc[row])
        expected = "a number" if scale is None else f"a number in [{scale[0]}, {scale[1]}] (the declared rating_scale)"
        raise DataError(f"{path}, row {row + 1}: rating {value!r} in column {names[2]!r} is invalid; expected {expected}")
    timestamps = None
    if timestamp_col is not None:
        timestamps = _parquet_ids(frame, names[3], "int", "timestamp", path)
    return RawRatings(users, items, ratings.astype(np.float32), timestamps, str(path))


def read_parquet_titles(path: str | Path, item_col: Column, title_col: Column, id_type: IdType = "int") -> tuple[np.ndarray, np.ndarray]:
    """(raw movie ids, titles) from a parquet movies table."""
    path = Path(path)
    frame, names = _read_parquet(path, [item_col, title_col])
    ids = _parquet_ids(frame, names[0], id_type, "movie id", path)
    titles = frame[names[1]].astype(object).where(frame[names[1]].notna(), "").astype(str).str.strip()
    return ids, titles.to_numpy(dtype=object)


def _read_parquet(path: Path, columns: list[Column]) -> tuple[pd.DataFrame, list[str]]:
    if not path.is_file():
        raise DataError(f"{path} does not exist: expected a parquet file of ratings")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading parquet files needs pyarrow, which is not installed; "
            "install it with `pip install pyarrow` (or `pip install mfrec[parquet]`), or convert the file to CSV"
        ) from None
    try:
        available = list(pq.read_schema(path).names)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise DataError(f"{path} is not a readable parquet file: {error}") from None
    names = []
    for column in columns:
        if isinstance(column, int) and not isinstance(column, bool):
            if not 0 <= column < len(available):
                raise DataError(f"{path}: column position {column} is out of range; the file has {len(available)} columns: {available}")
            names.append(available[column])
        elif column in available:
            names.append(column)
        else:
            raise DataError(f"{path}: no column {column!r}; the file has the columns {available}")
    return pd.read_parquet(path, columns=list(dict.fromkeys(names))), names


def _parquet_ids(frame: pd.DataFrame, name: str, id_type: str, label: str, path: Path) -> np.ndarray:
    column = frame[name]
    if id_type == "str":
        values = _clean_str_ids(column.astype(object).where(column.notna(), "").to_numpy(dtype=object))
        bad = values == ""
    else:
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
        if not bad.any():
            values = column.to_numpy(dtype=np.int64) if pd.api.types.is_integer_dtype(column) else numbers.astype(np.int64)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = "an integer" if id_type == "int" else "a non-empty string"
        raise DataError(f"{path}, row {row + 1}: {label} {_plain(column.iloc[row])!r} in column {name!r} is invalid; expected {expected}")
    return values


# --------------------------------------------------------------------------- numbering


def build_ratings(
    raw: RawRatings,
    titles: tuple[np.ndarray, np.ndarray] | None = None,
    rating_scale: Sequence[float] | None = None,
) -> Ratings:
    """Number raw ids 0..n-1 in sorted raw-id order, drop repeated (user, movie) pairs, and align titles.

    Sorting by raw id (not first appearance) makes the numbering independent of the file's line order.
    A repeated pair keeps its latest rating by timestamp (the last in the file without timestamps);
    the count dropped is logged as a warning.
    """
    user_codes, user_ids = pd.factorize(raw.users, sort=True)
    movie_codes, movie_ids = pd.factorize(raw.items, sort=True)
    user_codes = _owned(user_codes.astype(np.int64, copy=False))
    movie_codes = _owned(movie_codes.astype(np.int64, copy=False))
    ratings, timestamps = raw.ratings, raw.timestamps

    keep = _latest_per_pair(user_codes, movie_codes, len(movie_ids), timestamps, raw.source)
    if keep is not None:
        user_codes, movie_codes, ratings = user_codes[keep], movie_codes[keep], ratings[keep]  # copies
        timestamps = None if timestamps is None else timestamps[keep]

    movie_id_list = movie_ids.tolist()
    if titles is None:
        movie_titles = [str(movie) for movie in movie_id_list]
    else:
        movie_titles = _aligned_titles(movie_ids, movie_id_list, *titles)

    if rating_scale is None:
        scale = (float(ratings.min()), float(ratings.max()))
    else:
        scale = (float(rating_scale[0]), float(rating_scale[1]))
    return Ratings(
        users=torch.from_numpy(user_codes),
        movies=torch.from_numpy(movie_codes),
        ratings=torch.from_numpy(_owned(np.ascontiguousarray(ratings, dtype=np.float32))),
        user_ids=user_ids.tolist(),
        movie_ids=movie_id_list,
        movie_titles=movie_titles,
        rating_scale=scale,
        timestamps=None if timestamps is None else torch.from_numpy(_owned(np.ascontiguousarray(timestamps, dtype=np.int64))),
    )


def _latest_per_pair(
    users: np.ndarray, movies: np.ndarray, num_movies: int, timestamps: np.ndarray | None, source: str
) -> np.ndarray | None:
    """A keep-mask that leaves one rating per (user, movie) pair, or None when no pair repeats."""
    key = users * num_movies + movies
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):  # MovieLens' big files are sorted by (user, movie)
        return None
    ordered = np.sort(key)
    repeats = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
    del ordered
    if repeats == 0:
        return None
    involved = np.flatnonzero(pd.Series(key).duplicated(keep=False).to_numpy())
    sub_keys = key[involved]
    sort_keys = (involved, sub_keys) if timestamps is None else (involved, timestamps[involved], sub_keys)
    order = np.lexsort(sort_keys)  # by pair, then time, then file position
    ordered_keys = sub_keys[order]
    is_last = np.append(ordered_keys[1:] != ordered_keys[:-1], True)
    keep = np.ones(len(key), dtype=bool)
    keep[involved[order[~is_last]]] = False
    rule = "the latest by timestamp" if timestamps is not None else "the last in the file"
    log.warning("%s: dropped %d repeated (user, movie) ratings, keeping %s for each pair", source, repeats, rule)
    return keep


def _aligned_titles(movie_ids: np.ndarray, movie_id_list: list, title_ids: np.ndarray, titles: np.ndarray) -> list[str]:
    """``titles`` reordered to match ``movie_ids``; a movie without a title is named by its raw id."""
    series = pd.Series(titles, index=pd.Index(title_ids), dtype=object)
    repeated = series.index.duplicated(keep="first")
    if repeated.any():
        log.warning("the movies file lists %d movie ids more than once; keeping the first title of each", int(repeated.sum()))
        series = series[~repeated]
    found = series.reindex(pd.Index(movie_ids)).to_numpy(dtype=object)
    return [title if isinstance(title, str) and title else str(raw) for title, raw in zip(found, movie_id_list)]


# --------------------------------------------------------------------------- the table reader


_PANDAS_TYPES = {"int": "int64", "float": "float64", "str": "object", "text": "object"}


class _Table:
    """One delimited file: its first line, column names and field count, and the two ways to read it."""

    def __init__(self, path: Path, fmt: TableFormat, expected_fields: int | None):
        if not fmt.sep or "\n" in fmt.sep or "\r" in fmt.sep or (fmt.quoting and '"' in fmt.sep):
            raise DataError(f"{path}: separator {fmt.sep!r} cannot separate fields")
        self.path, self.fmt = path, fmt
        if not path.is_file():
            what = "a folder, not a file" if path.is_dir() else "missing"
            raise DataError(f"{path} is {what}: expected a {fmt.separator_name()}-separated ratings or movies file")
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes): expected {'a header line and ' if fmt.header else ''}one record per line")
        self._bytes: bytes | None = None
        self.sep1 = fmt.sep if len(fmt.sep) == 1 else self._spare_separator()
        self.first_line, first_text, self.header_names = self._first_line()
        self.num_fields = len(self.header_names)
        self.data_start = 1 if fmt.header else 0  # physical lines before the first data line
        if expected_fields is not None and self.num_fields != expected_fields:
            what = "header" if fmt.header else "line"
            raise DataError(
                f"{path}, line {self.first_line}: {_shown(first_text)}: this {what} has {self.num_fields} "
                f"{fmt.separator_name()}-separated fields; expected {expected_fields}"
            )

    # -- layout

    def name(self, position: int) -> str:
        return f"f{position}"

    def field(self, role: str, column: Column, kind: str, label: str) -> _Field:
        """Resolve a column given by name (needs a header) or 0-based position."""
        if isinstance(column, bool) or not isinstance(column, (str, int)):
            raise DataError(f"{self.path}: the {label} column must be a header name or a 0-based position, got {column!r}")
        if isinstance(column, int):
            if not 0 <= column < self.num_fields:
                raise DataError(
                    f"{self.path}: the {label} column is position {column}, but line {self.first_line} has only "
                    f"{self.num_fields} fields (positions 0..{self.num_fields - 1})"
                )
            return _Field(role, column, kind, label)
        if not self.fmt.header:
            raise DataError(f"{self.path}: the {label} column is named {column!r}, but the file has no header; give a 0-based position")
        if column not in self.header_names:
            raise DataError(
                f"{self.path}, line 1: the header has no column {column!r} for the {label}; "
                f"its columns are {', '.join(repr(name) for name in self.header_names)}"
            )
        return _Field(role, self.header_names.index(column), kind, label, column)

    def check_distinct(self, fields: list[_Field]) -> None:
        positions = [f.position for f in fields]
        if len(set(positions)) != len(positions):
            raise DataError(f"{self.path}: two roles read the same column: " + ", ".join(f"{f.label} = field {f.position}" for f in fields))

    def expected(self, fields: list[_Field], scale: tuple[float, float] | None) -> str:
        """What a valid line looks like, for messages."""
        kinds = {"int": "integer", "str": "non-empty text", "text": "text"}
        parts = []
        for f in sorted(fields, key=lambda f: f.position):
            if f.kind == "float":
                kind = "a number" + ("" if scale is None else f" in [{scale[0]:g}, {scale[1]:g}]")
            else:
                kind = kinds[f.kind]
            where = f"field {f.position + 1}" + (f" ({f.column!r})" if f.column is not None else "")
            parts.append(f"{f.label}: {kind} in {where}")
        return f"{self.num_fields} {self.fmt.separator_name()}-separated fields ({'; '.join(parts)})"

    # -- reading

    def _raw(self) -> bytes:
        if self._bytes is None:
            self._bytes = self.path.read_bytes()
        return self._bytes

    def _spare_separator(self) -> str:
        raw = self._raw()
        sep = self.fmt.sep.encode(self.fmt.encoding)
        for spare in _SPARE_SEPARATORS:
            if spare not in raw:
                self._bytes = raw.replace(sep, spare)
                return spare.decode("ascii")
        raise DataError(f"{self.path}: cannot split on {self.fmt.sep!r}: the file contains every spare control byte")

    def _source(self) -> str | io.BytesIO:
        return io.BytesIO(self._bytes) if self._bytes is not None else str(self.path)

    def _pandas_options(self) -> dict:
        return dict(
            sep=self.sep1, header=None, names=[self.name(i) for i in range(self.num_fields)], index_col=False,
            skiprows=self.data_start, skipinitialspace=True, engine="c", encoding=self.fmt.encoding,
            quoting=csv.QUOTE_MINIMAL if self.fmt.quoting else csv.QUOTE_NONE,
        )

    def _first_line(self) -> tuple[int, str, list[str]]:
        """The header (line 1), or the first non-blank line: its number, text and fields."""
        encoding = "utf-8-sig" if codecs.lookup(self.fmt.encoding).name == "utf-8" else self.fmt.encoding
        stream = io.TextIOWrapper(io.BytesIO(self._bytes), encoding=encoding, newline="") if self._bytes is not None else None
        try:
            with stream or open(self.path, encoding=encoding, newline="") as lines:
                for number, line in enumerate(lines, 1):
                    text = line.rstrip("\r\n")
                    if text.strip() or self.fmt.header:
                        break
                else:
                    raise DataError(f"{self.path} holds only blank lines: expected one record per line")
        except UnicodeDecodeError:
            raise _encoding_error(self.path, self.fmt.encoding) from None
        if not text.strip():
            raise DataError(f"{self.path}, line 1: the header line is blank; expected the column names")
        quoting = csv.QUOTE_MINIMAL if self.fmt.quoting else csv.QUOTE_NONE
        fields = next(csv.reader([text], delimiter=self.sep1, quoting=quoting, skipinitialspace=True))
        shown = text.replace(self.sep1, self.fmt.sep)
        return number, shown, [field.strip() for field in fields]

    def read_fast(
        self, fields: list[_Field], dtypes: dict[str, str], scale: tuple[float, float] | None, keep_default_na: bool
    ) -> pd.DataFrame:
        """The typed columns via pandas' C parser; any failure is turned into a line-level DataError."""
        options = self._pandas_options()
        if len(fields) < self.num_fields:
            options["usecols"] = [self.name(f.position) for f in fields]
        try:
            return pd.read_csv(self._source(), dtype=dtypes, keep_default_na=keep_default_na, **options)
        except UnicodeDecodeError:
            raise _encoding_error(self.path, self.fmt.encoding) from None
        except (ValueError, TypeError, OverflowError, pd.errors.ParserError) as error:
            known = self._field_count_error(error, fields, scale) if isinstance(error, pd.errors.ParserError) else None
            raise (known or self.diagnose(fields, scale, hint=str(error).strip())) from None

    def read_text(self) -> pd.DataFrame | None:
        """All fields as text, one row per physical line (blank lines included), or None if the C parser fails."""
        try:
            return pd.read_csv(self._source(), dtype=str, keep_default_na=False, skip_blank_lines=False, **self._pandas_options())
        except UnicodeDecodeError:
            raise _encoding_error(self.path, self.fmt.encoding) from None
        except (ValueError, pd.errors.ParserError):
            return None

    def diagnose(self, fields: list[_Field], scale: tuple[float, float] | None, hint: str) -> DataError:
        """Find and describe the first bad line, after the fast path failed or a check rejected a row.

        Chunks are read again as numbers (floats, so blank lines and missing fields give NaN instead
        of an exception); rows that look wrong are then checked one by one from their text. A chunk
        holding text where a number belongs makes pandas raise: that chunk alone is re-read as text.
        """
        typed = {self.name(f.position): "float64" if f.kind in ("int", "float") else "object" for f in fields}
        options = self._pandas_options()
        lines_before = self.data_start
        try:
            # Inside the try: opening the reader already tokenizes, and can fail (an unclosed quote).
            reader = pd.read_csv(self._source(), dtype=typed, skip_blank_lines=False, chunksize=_DIAGNOSE_CHUNK, **options)
            with reader:
                for chunk in reader:
                    problem = self.first_problem(lines_before, _suspects(chunk, self, fields, scale), fields, scale)
                    if problem is not None:
                        return problem
                    lines_before += len(chunk)
        except UnicodeDecodeError:
            return _encoding_error(self.path, self.fmt.encoding)
        except pd.errors.ParserError as error:
            problem = self._field_count_error(error, fields, scale)
            if problem is not None:
                return problem
            hint = str(error).strip()
        except (ValueError, TypeError, OverflowError) as error:  # text in a number column, in this chunk
            options["skiprows"] = lines_before
            chunk = pd.read_csv(
                self._source(), dtype=object, keep_default_na=False, skip_blank_lines=False, nrows=_DIAGNOSE_CHUNK, **options
            )
            problem = self.first_problem(lines_before, _suspects(chunk, self, fields, scale), fields, scale)
            if problem is not None:
                return problem
            hint = str(error).strip()
        return DataError(f"{self.path} could not be parsed ({hint}); expected {self.expected(fields, scale)} on every line")

    def _field_count_error(
        self, error: Exception, fields: list[_Field], scale: tuple[float, float] | None
    ) -> DataError | None:
        """The C parser's "Expected 4 fields in line 7, saw 5" as a DataError, or None for other errors."""
        found = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", str(error))
        if not found:
            return None
        line = int(found[1])
        return self.first_problem(line - 1, np.array([0]), fields, scale) or self.line_error(line, f"has {found[2]} fields", fields, scale)

    def first_problem(
        self, lines_before: int, rows: np.ndarray, fields: list[_Field], scale: tuple[float, float] | None
    ) -> DataError | None:
        """The error for the first of ``rows`` (0-based, counted from line ``lines_before + 1``) whose text is bad."""
        if len(rows) == 0:
            return None
        with open(self.path, encoding=self.fmt.encoding, errors="replace", newline="") as lines:
            position = 0  # lines consumed so far
            for row in rows.tolist():
                line = lines_before + row + 1
                next(islice(lines, line - 1 - position, line - 1 - position), None)  # skip ahead in C
                text = next(lines, "").rstrip("\r\n")
                position = line
                message = self.line_problem(text, fields, scale)
                if message is not None:
                    return self.line_error(line, message, fields, scale, text)
        return None

    def line_problem(self, text: str, fields: list[_Field], scale: tuple[float, float] | None) -> str | None:
        """What is wrong with one line of text, or None (blank lines are tolerated)."""
        if not text.strip():
            return None
        values = self.split(text)
        if len(values) != self.num_fields:
            shape = "fewer" if len(values) < self.num_fields else "more"
            return f"has {len(values)} fields, {shape} than the {self.num_fields} of line {self.first_line} (truncated or malformed line?)"
        for f in sorted(fields, key=lambda f: f.position):
            value = values[f.position].strip()
            if f.kind == "text":
                continue
            if value == "":
                return f"{f.label} is empty"
            if f.kind == "int" and not re.fullmatch(_INT_PATTERN, value):
                if re.fullmatch(r"[+-]?\d{19,}", value):
                    return f"{f.label} {value!r} does not fit in a 64-bit integer"
                return f"{f.label} {value!r} is not an integer"
            if f.kind == "float":
                try:
                    number = float(value)
                except ValueError:
                    if value.lower() in _NA_WORDS:
                        return f"{f.label} {value!r} is NaN (a missing rating)"
                    return f"{f.label} {value!r} is not a number"
                if math.isnan(number):
                    return f"{f.label} {value!r} is NaN (a missing rating)"
                if math.isinf(number):
                    return f"{f.label} {value!r} is not finite"
                if scale is not None and not scale[0] <= number <= scale[1]:
                    return f"{f.label} {value} is outside the declared rating scale [{scale[0]:g}, {scale[1]:g}]"
        return None

    def line_error(
        self, line: int, message: str, fields: list[_Field], scale: tuple[float, float] | None = None, text: str | None = None
    ) -> DataError:
        if text is None:
            text = _line_text(self.path, self.fmt.encoding, line)
        return DataError(f"{self.path}, line {line}: {_shown(text)}: {message}; expected {self.expected(fields, scale)}")

    def split(self, text: str) -> list[str]:
        """One line's fields, split as pandas splits them."""
        quoting = csv.QUOTE_MINIMAL if self.fmt.quoting else csv.QUOTE_NONE
        if self.sep1 != self.fmt.sep:
            text = text.replace(self.fmt.sep, self.sep1)
        return next(csv.reader([text], delimiter=self.sep1, quoting=quoting, skipinitialspace=True), [])

    def check_field_counts(self, fields: list[_Field]) -> None:
        """Raise for the first non-blank line whose field count is not the first line's, scanning bytes with numpy."""
        line = self._first_bad_field_count()
        if line is not None:
            raise self.first_problem(line - 1, np.array([0]), fields, None) or self.line_error(line, "has a wrong field count", fields)

    def _first_bad_field_count(self) -> int | None:
        separator = ord(self.sep1)
        quote = ord('"') if self.fmt.quoting else None
        lines_before = 0
        for block in self._line_blocks():
            data = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)
            if data[-1] != 10:
                ends = np.append(ends, len(data))
            starts = np.concatenate(([0], ends[:-1] + 1))
            is_separator = data == separator
            if quote is not None:  # a separator after an odd number of quotes is inside a quoted field
                is_separator &= (np.cumsum(data == quote, dtype=np.int32) & 1) == 0
            separators = np.concatenate(([0], np.cumsum(is_separator, dtype=np.int32)))
            printable = np.concatenate(([0], np.cumsum(~np.isin(data, _WHITESPACE), dtype=np.int32)))
            non_blank = printable[ends] > printable[starts]
            bad = np.flatnonzero(non_blank & (separators[ends] - separators[starts] + 1 != self.num_fields))
            if len(bad):
                return lines_before + int(bad[0]) + 1
            lines_before += len(ends)
        return None

    def _line_blocks(self, size: int = 1 << 24):
        """The file's bytes (after separator replacement) in blocks that end at a line end."""
        if self._bytes is not None:
            view = memoryview(self._bytes)
            start = 0
            while start < len(view):
                end = self._bytes.find(b"\n", min(start + size, len(view)) - 1)
                end = len(view) if end < 0 else end + 1
                yield view[start:end]
                start = end
            return
        carry = b""
        with open(self.path, "rb") as stream:
            while True:
                block = stream.read(size)
                if not block:
                    if carry:
                        yield carry
                    return
                data = carry + block
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield data[:cut]
                carry = data[cut:]

    def no_rows_error(self) -> DataError:
        where = " after its header line" if self.fmt.header else ""
        return DataError(f"{self.path} holds no records{where}: expected one record per line")


def _suspects(frame: pd.DataFrame, table: _Table, fields: list[_Field], scale: tuple[float, float] | None) -> np.ndarray:
    """Rows of a chunk (numbers as floats, or all text) that may be bad, found with vectorised checks.

    Blank lines are among them (all fields missing); ``_Table.line_problem`` then decides from the text.
    """
    suspect = np.zeros(len(frame), dtype=bool)
    for f in fields:
        column = frame[table.name(f.position)]
        if f.kind in ("int", "float"):
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if f.kind == "int":
                with np.errstate(invalid="ignore"):
                    suspect |= ~np.isfinite(numbers) | (numbers != np.floor(numbers)) | (np.abs(numbers) >= 2.0**63)
            else:
                suspect |= ~np.isfinite(numbers)
                if scale is not None:
                    suspect |= (numbers < scale[0]) | (numbers > scale[1])
        elif f.kind == "str":
            suspect |= (column.isna() | (column.astype(object).fillna("").astype(str).str.strip() == "")).to_numpy(dtype=bool)
    return np.flatnonzero(suspect)


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows read from empty or whitespace-only lines (tolerated, as pandas' fast path skips them)."""
    blank = np.ones(len(frame), dtype=bool)
    for name in frame.columns:
        blank &= (frame[name].fillna("").astype(str).str.strip() == "").to_numpy(dtype=bool)
    return blank


# --------------------------------------------------------------------------- helpers


def _clean_str_ids(values: np.ndarray) -> np.ndarray:
    """String ids with surrounding whitespace removed ('' for a missing id)."""
    series = pd.Series(values, dtype=object)
    return series.where(series.notna(), "").astype(str).str.strip().to_numpy(dtype=object)


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _owned(array: np.ndarray) -> np.ndarray:
    """A writable array: pandas' copy-on-write hands out read-only views, which torch warns about."""
    return array if array.flags.writeable else array.copy()


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_LINE_SHOWN else text[:_MAX_LINE_SHOWN] + "...")


def record_line(path: str | Path, encoding: str, header: bool, record: int) -> int:
    """The 1-based line of the 0-based data record ``record`` (blank lines skipped). Loops: for errors only."""
    seen = -1
    with open(path, encoding=encoding, errors="replace", newline="") as lines:
        for number, text in enumerate(lines, 1):
            if header and number == 1:
                continue
            if text.strip():
                seen += 1
                if seen == record:
                    return number
    return record + 1 + int(header)


def _line_text(path: Path, encoding: str, line: int) -> str:
    """The text of 1-based ``line`` (read again from disk: errors only)."""
    with open(path, encoding=encoding, errors="replace", newline="") as lines:
        for text in islice(lines, line - 1, line):
            return text.rstrip("\r\n")
    return ""


def _encoding_error(path: Path, encoding: str) -> DataError:
    """Find the first byte that does not decode, block by block, and name its line and a likely encoding."""
    decoder_name = codecs.lookup(encoding).name
    suggestion = "latin-1" if decoder_name == "utf-8" else "utf-8"
    line_base, carry = 1, b""
    with open(path, "rb") as stream:
        while True:
            block = stream.read(1 << 24)
            data = carry + block
            if not block:
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1  # decode whole lines: multi-byte characters never span a newline
            piece, carry = data[:cut], data[cut:]
            try:
                piece.decode(encoding)
            except UnicodeDecodeError as error:
                start = piece.rfind(b"\n", 0, error.start) + 1
                end = piece.find(b"\n", error.start)
                text = piece[start : end if end >= 0 else len(piece)].rstrip(b"\r").decode(encoding, errors="replace")
                line = line_base + piece.count(b"\n", 0, error.start)
                return DataError(
                    f"{path}, line {line}: {_shown(text)}: byte 0x{piece[error.start]:02x} is not valid {encoding}; "
                    f"the file is not {encoding}-encoded (probably {suggestion}): read it with encoding={suggestion}"
                )
            line_base += piece.count(b"\n")
            if not block:
                break
    return DataError(f"{path} could not be decoded as {encoding}; try encoding={suggestion}")
