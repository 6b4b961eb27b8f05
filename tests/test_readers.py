"""The strict parser, the CSV/parquet source and the parsed-data cache, on small files written per test."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

import mfrec.data.cache as cache
import mfrec.data.csv_source as csv_source
from mfrec.data.csv_source import CsvRatings
from mfrec.data.readers import TableFormat, read_ratings, read_titles
from mfrec.errors import ConfigError, DataError

RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "10,300,4.0,1000\n"
    "2,100,3.5,1001\n"
    "10,100,5.0,1002\n"
    "7,200,0.5,1003\n"
)
MOVIES_CSV = (
    "movieId,title,genres\n"
    '100,"American President, The (1995)",Comedy|Drama|Romance\n'
    "200,Heat (1995),Action|Crime|Thriller\n"
    "999,Never Rated (2001),Drama\n"
)


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the fallback cache inside the test's folder."""
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("MFREC_CACHE_DIR", str(folder))
    return folder


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.pt")) + sorted(folder.rglob("*.tmp"))


# --------------------------------------------------------------------------- CSV source


def test_csv_by_name_maps_ids_in_sorted_order_and_aligns_titles(tmp_path: Path):
    ratings = CsvRatings(
        write(tmp_path / "ratings.csv", RATINGS_CSV), timestamp_col="timestamp",
        titles_path=write(tmp_path / "movies.csv", MOVIES_CSV),
    ).load()
    assert ratings.user_ids == [2, 7, 10] and all(type(raw) is int for raw in ratings.user_ids)
    assert ratings.movie_ids == [100, 200, 300]
    # 999 has a title but no ratings: not a movie; 300 has ratings but no title: named by its id
    assert ratings.movie_titles == ["American President, The (1995)", "Heat (1995)", "300"]
    assert ratings.users.tolist() == [2, 0, 2, 1]  # file order kept
    assert ratings.movies.tolist() == [2, 0, 0, 1]
    assert ratings.ratings.tolist() == [4.0, 3.5, 5.0, 0.5]
    assert ratings.timestamps.tolist() == [1000, 1001, 1002, 1003]
    assert ratings.users.dtype == ratings.movies.dtype == ratings.timestamps.dtype == torch.int64
    assert ratings.ratings.dtype == torch.float32
    assert ratings.rating_scale == (0.5, 5.0)


def test_csv_columns_by_name_in_any_order_with_extra_columns(tmp_path: Path):
    path = write(tmp_path / "r.csv", "ts,extra,rating,item,user\n5,a,3,20,1\n6,b,4,10,2\n")
    ratings = CsvRatings(path, user_col="user", item_col="item", rating_col="rating", timestamp_col="ts").load()
    assert ratings.user_ids == [1, 2] and ratings.movie_ids == [10, 20]
    assert ratings.movies.tolist() == [1, 0] and ratings.timestamps.tolist() == [5, 6]


def test_csv_columns_by_position_without_header(tmp_path: Path):
    path = write(tmp_path / "r.txt", "3.5;u;42;7\n2;u;41;8\n")
    ratings = CsvRatings(path, sep=";", header=False, user_col=3, item_col=2, rating_col=0, rating_scale=None).load()
    assert ratings.user_ids == [7, 8] and ratings.movie_ids == [41, 42]
    assert ratings.ratings.tolist() == [3.5, 2.0]
    assert ratings.rating_scale == (2.0, 3.5)  # observed, as none was declared
    assert ratings.timestamps is None


def test_csv_multi_character_separator_and_string_ids(tmp_path: Path):
    path = write(tmp_path / "r.dat", "bob::Heat::4\nalice::Heat::5\nalice::Up::3\n")
    ratings = CsvRatings(path, sep="::", header=False, user_col=0, item_col=1, rating_col=2, rating_scale=[1, 5], id_type="str").load()
    assert ratings.user_ids == ["alice", "bob"] and ratings.movie_ids == ["Heat", "Up"]
    assert ratings.movie_titles == ["Heat", "Up"]


def test_stray_whitespace_and_blank_lines_are_tolerated(tmp_path: Path):
    path = write(tmp_path / "r.csv", "userId , movieId,rating\n 1 , 2 , 3.5 \n\n   \n2,3 ,4\r\n")
    ratings = CsvRatings(path).load()
    assert ratings.user_ids == [1, 2] and ratings.ratings.tolist() == [3.5, 4.0]


def test_named_column_without_header_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.source.user_col") as error:
        CsvRatings(tmp_path / "r.csv", header=False)
    assert "0-based position" in str(error.value)


def test_unknown_column_name_lists_the_header(tmp_path: Path):
    path = write(tmp_path / "r.csv", "user,movie,stars\n1,2,3\n")
    with pytest.raises(DataError, match=r"no column 'userId'.*'user', 'movie', 'stars'"):
        CsvRatings(path).load()


# --------------------------------------------------------------------------- strict validation

TAB = TableFormat(sep="\t", header=False, encoding="latin-1", quoting=False)
CSV = TableFormat(sep=",", header=True)
HEADER = "userId,movieId,rating,timestamp\n"


@pytest.mark.parametrize(
    "fmt, text, line, bad_line, message",
    [
        (TAB, "1\t2\t3\t4\n5\t6\t7\n", 2, "5\t6\t7", "has 3 fields, fewer than the 4"),
        (TAB, "1\t2\t3\t4\n5\t6\t3\t8\t9\n", 2, "5\t6\t3\t8\t9", "has 5 fields, more than the 4"),
        (TAB, "1\t2\t3\t4\n\n1\tx\t3\t8\n", 3, "1\tx\t3\t8", "movie id 'x' is not an integer"),
        (TAB, "1\t2\t3\t4\nabc\t2\t3\t8\n", 2, "abc\t2\t3\t8", "user id 'abc' is not an integer"),
        (TAB, "1\t2\t3\t4\n1\t2.5\t3\t8\n", 2, "1\t2.5\t3\t8", "movie id '2.5' is not an integer"),
        (TAB, "1\t2\t3\t4\n5\t6\tgood\t8\n", 2, "5\t6\tgood\t8", "rating 'good' is not a number"),
        (TAB, "1\t2\t3\t4\n5\t6\tNaN\t8\n", 2, "5\t6\tNaN\t8", "rating 'NaN' is NaN"),
        (TAB, "1\t2\t3\t4\n5\t6\t\t8\n", 2, "5\t6\t\t8", "rating is empty"),
        (TAB, "1\t2\t3\t4\n5\t6\tinf\t8\n", 2, "5\t6\tinf\t8", "rating 'inf' is not finite"),
        (TAB, "1\t2\t3\t4\n5\t6\t6\t8\n", 2, "5\t6\t6\t8", "rating 6 is outside the declared rating scale [1, 5]"),
        (TAB, "1\t2\t0\t4\n", 1, "1\t2\t0\t4", "rating 0 is outside the declared rating scale [1, 5]"),
        (TAB, "1\t2\t3\t4\n5\t6\t3\tlater\n", 2, "5\t6\t3\tlater", "timestamp 'later' is not an integer"),
        (TAB, "1\t2\t3\t4\n99999999999999999999\t6\t3\t8\n", 2, "99999999999999999999\t6\t3\t8", "does not fit in a 64-bit integer"),
        (CSV, HEADER + "1,2,3,4\n1,2\n", 3, "1,2", "has 2 fields, fewer than the 4"),
        (CSV, HEADER + "1,2,3,4\n1,2,3,4,5\n", 3, "1,2,3,4,5", "has 5 fields"),
        (CSV, HEADER + "1,2,3,4\n" + "1,2,3,4\n" * 5 + "1,2,nan,4\n", 8, "1,2,nan,4", "rating 'nan' is NaN"),
    ],
)
def test_bad_lines_name_the_file_line_text_and_expectation(tmp_path: Path, fmt, text, line, bad_line, message):
    path = write(tmp_path / "bad.txt", text)
    columns = dict(user_col="userId", item_col="movieId", rating_col="rating", timestamp_col="timestamp") if fmt.header else dict(timestamp_col=3)
    with pytest.raises(DataError) as error:
        read_ratings(path, fmt, rating_scale=(1, 5), **columns)
    text = str(error.value)
    assert f"{path}, line {line}: {bad_line!r}" in text
    assert message in text
    assert "expected 4" in text and "separated fields" in text


def test_wrong_first_line_field_count_against_the_format(tmp_path: Path):
    path = write(tmp_path / "u.data", "1\t2\t3\n4\t5\t6\n")
    with pytest.raises(DataError, match=r"u.data, line 1: '1\\t2\\t3': this line has 3 tab-separated fields; expected 4"):
        read_ratings(path, TAB, timestamp_col=3, expected_fields=4)


def test_a_late_error_in_a_large_file_is_found_with_its_line_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("mfrec.data.readers._DIAGNOSE_CHUNK", 1000)  # several chunks of text
    lines = [f"{i % 97},{i},3.5,{i}" for i in range(5000)]
    lines[4321] = "4,5,x,6"
    path = write(tmp_path / "big.csv", HEADER + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"big.csv, line 4323: '4,5,x,6': rating 'x' is not a number"):
        read_ratings(path, CSV, "userId", "movieId", "rating", "timestamp")


@pytest.mark.parametrize(
    "text, header, message",
    [
        ("", True, r"is empty \(0 bytes\)"),
        ("\n\n  \n", False, "holds only blank lines"),
        ("\n1,2,3\n", True, "line 1: the header line is blank"),
        (HEADER, True, "holds no records after its header line"),
    ],
)
def test_empty_files_are_rejected(tmp_path: Path, text: str, header: bool, message: str):
    path = write(tmp_path / "ratings.csv", text)
    columns = {} if header else dict(user_col=0, item_col=1, rating_col=2)
    with pytest.raises(DataError, match=message) as error:
        CsvRatings(path, header=header, **columns).load()
    assert str(path) in str(error.value)


def test_missing_file_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match=r"nowhere.csv does not exist"):
        CsvRatings(tmp_path / "nowhere.csv").load()
    with pytest.raises(DataError, match=r"missing"):
        read_ratings(tmp_path / "nowhere.csv", CSV)


def test_wrong_encoding_names_the_file_line_and_a_likely_encoding(tmp_path: Path):
    path = write(tmp_path / "movies.csv", "movieId,title\n1,Toy Story (1995)\n2,Café (1995)\n", encoding="latin-1")
    with pytest.raises(DataError) as error:
        read_titles(path, CSV, "movieId", "title")
    text = str(error.value)
    assert f"{path}, line 3" in text and "not valid utf-8" in text and "encoding=latin-1" in text
    ids, titles = read_titles(path, TableFormat(encoding="latin-1"), "movieId", "title")
    assert titles.tolist() == ["Toy Story (1995)", "Café (1995)"]


def test_truncated_titles_line_is_rejected(tmp_path: Path):
    path = write(tmp_path / "movies.csv", MOVIES_CSV + "5,Short Line\n")
    with pytest.raises(DataError, match=r"line 5: '5,Short Line': has 2 fields, fewer than the 3"):
        read_titles(path, CSV, "movieId", "title")


def test_quoted_title_with_a_separator_counts_as_one_field(tmp_path: Path):
    path = write(tmp_path / "movies.csv", MOVIES_CSV + '7,"""Quoted"" Title, A (1999)",Drama\n')
    ids, titles = read_titles(path, CSV, "movieId", "title")
    assert ids.tolist() == [100, 200, 999, 7]
    assert titles[-1] == '"Quoted" Title, A (1999)'


def test_csv_with_unused_columns_still_checks_field_counts(tmp_path: Path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,comment\n1,2,3,fine\n1,3,4,too,many\n")
    with pytest.raises(DataError, match=r"line 3: '1,3,4,too,many': has 5 fields"):
        CsvRatings(path).load()


# --------------------------------------------------------------------------- duplicates


def test_repeated_pairs_keep_the_latest_timestamp(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = write(tmp_path / "r.csv", HEADER + "1,5,2.0,300\n1,5,4.0,100\n2,5,1.0,50\n1,5,3.0,200\n")
    with caplog.at_level(logging.WARNING, logger="mfrec.data.readers"):
        ratings = CsvRatings(path, timestamp_col="timestamp").load()
    assert len(ratings) == 2
    assert ratings.ratings.tolist() == [2.0, 1.0] and ratings.timestamps.tolist() == [300, 50]
    assert "dropped 2 repeated (user, movie) ratings, keeping the latest by timestamp" in caplog.text


def test_repeated_pairs_without_timestamps_keep_the_last_in_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = write(tmp_path / "r.csv", "userId,movieId,rating\n1,5,2.0\n1,6,4.0\n1,5,3.0\n")
    with caplog.at_level(logging.WARNING, logger="mfrec.data.readers"):
        ratings = CsvRatings(path).load()
    assert ratings.movies.tolist() == [1, 0] and ratings.ratings.tolist() == [4.0, 3.0]
    assert "dropped 1 repeated" in caplog.text and "the last in the file" in caplog.text


# --------------------------------------------------------------------------- parquet


def test_parquet_by_name_and_position(tmp_path: Path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    path = tmp_path / "ratings.parquet"
    pd.DataFrame({"userId": [3, 1], "movieId": [9, 8], "rating": [4.5, 2.0], "timestamp": [7, 8]}).to_parquet(path)
    by_name = CsvRatings(path, timestamp_col="timestamp").load()
    by_position = CsvRatings(path, user_col=0, item_col=1, rating_col=2, cache=False).load()
    for ratings in (by_name, by_position):
        assert ratings.user_ids == [1, 3] and ratings.movie_ids == [8, 9] and ratings.ratings.tolist() == [4.5, 2.0]
    assert by_name.timestamps.tolist() == [7, 8]
    pd.DataFrame({"userId": [1], "movieId": [2], "rating": [9.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"ratings.parquet, row 1: rating 9.0"):
        CsvRatings(path).load()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "ratings.parquet", "not really parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"ratings.parquet: reading parquet files needs pyarrow.*pip install pyarrow"):
        CsvRatings(path).load()


# --------------------------------------------------------------------------- cache


def _fail_parsing(*args, **kwargs):
    raise AssertionError("parsed although a valid cache exists")


def test_second_load_comes_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "data" / "ratings.csv", RATINGS_CSV)
    first = CsvRatings(path, timestamp_col="timestamp").load()
    assert len(list((tmp_path / "data" / ".mfrec-cache").glob("ratings.csv-*.pt"))) == 1
    monkeypatch.setattr(csv_source, "read_ratings", _fail_parsing)
    second = CsvRatings(path, timestamp_col="timestamp").load()
    for name in ("users", "movies", "ratings", "timestamps"):
        assert torch.equal(getattr(first, name), getattr(second, name))
        assert getattr(second, name).dtype == getattr(first, name).dtype
    assert (second.user_ids, second.movie_ids, second.movie_titles, second.rating_scale) == (
        first.user_ids, first.movie_ids, first.movie_titles, first.rating_scale,
    )


def test_parser_options_are_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)
    CsvRatings(path).load()
    monkeypatch.setattr(csv_source, "read_ratings", _fail_parsing)
    with pytest.raises(AssertionError, match="parsed although"):
        CsvRatings(path, timestamp_col="timestamp").load()


def test_an_edited_file_is_parsed_again_and_the_stale_cache_removed(tmp_path: Path):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)
    assert len(CsvRatings(path).load()) == 4
    write(path, RATINGS_CSV + "11,400,1.0,1004\n")
    assert len(CsvRatings(path).load()) == 5
    assert len(list((tmp_path / ".mfrec-cache").glob("*.pt"))) == 1


def test_a_titles_file_edit_invalidates_the_cache(tmp_path: Path):
    path, movies = write(tmp_path / "ratings.csv", RATINGS_CSV), write(tmp_path / "movies.csv", MOVIES_CSV)
    assert CsvRatings(path, titles_path=movies).load().movie_titles[1] == "Heat (1995)"
    write(movies, MOVIES_CSV.replace("Heat (1995)", "\"Heat, Director's Cut (1995)\""))
    os.utime(movies, ns=(1, 1))  # even a same-second edit changes size or mtime
    assert CsvRatings(path, titles_path=movies).load().movie_titles[1] == "Heat, Director's Cut (1995)"


def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)
    expected = CsvRatings(path).load()
    (cache_file,) = (tmp_path / ".mfrec-cache").glob("*.pt")
    cache_file.write_bytes(b"garbage, not a torch file")
    with caplog.at_level(logging.WARNING, logger="mfrec.data.cache"):
        again = CsvRatings(path).load()
    assert "ignoring the unreadable cache file" in caplog.text
    assert torch.equal(again.ratings, expected.ratings)
    assert cache._read(cache_file) is not None  # rewritten


def test_read_only_data_folder_falls_back_to_the_user_cache(tmp_path: Path, user_cache: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "shared" / "ratings.csv", RATINGS_CSV)
    local = tmp_path / "shared" / ".mfrec-cache"
    real_mkstemp = cache.tempfile.mkstemp

    def read_only_shared(*args, dir=None, **kwargs):
        if Path(dir) == local:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only_shared)
    first = CsvRatings(path).load()
    assert not list(local.glob("*")) and len(list(user_cache.glob("ratings.csv-*.pt"))) == 1
    monkeypatch.setattr(csv_source, "read_ratings", _fail_parsing)
    assert torch.equal(CsvRatings(path).load().ratings, first.ratings)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_data_folder_with_real_permissions(tmp_path: Path, user_cache: Path):
    folder = tmp_path / "shared"
    path = write(folder / "ratings.csv", RATINGS_CSV)
    folder.chmod(0o555)
    try:
        CsvRatings(path).load()
    finally:
        folder.chmod(0o755)
    assert not (folder / ".mfrec-cache").exists()
    assert len(list(user_cache.glob("*.pt"))) == 1


def test_a_failing_cache_never_fails_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.tempfile, "mkstemp", no_space)
    with caplog.at_level(logging.WARNING, logger="mfrec.data.cache"):
        assert len(CsvRatings(path).load()) == 4
    assert "could not cache" in caplog.text
    assert cache_files(tmp_path) == []


def test_a_failed_parse_leaves_no_cache_behind(tmp_path: Path):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV + "1,2,oops,3\n")
    with pytest.raises(DataError, match="line 6"):
        CsvRatings(path, timestamp_col="timestamp").load()
    assert cache_files(tmp_path) == []


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk went away mid-write")

    monkeypatch.setattr(cache.torch, "save", broken_save)
    assert len(CsvRatings(path).load()) == 4
    assert cache_files(tmp_path) == []


def test_cache_can_be_turned_off(tmp_path: Path):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)
    CsvRatings(path, cache=False).load()
    assert cache_files(tmp_path) == []


def test_an_unclosed_quote_is_a_data_error_naming_the_file(tmp_path):
    # Found by tests/test_fuzz.py: pandas fails while opening its reader, before any row is read.
    path = tmp_path / "ratings.csv"
    path.write_text('userId,movieId,rating,timestamp\n"')
    with pytest.raises(DataError, match=r"ratings\.csv could not be parsed \(.*EOF inside string"):
        CsvRatings(path, timestamp_col="timestamp", cache=False).load()
