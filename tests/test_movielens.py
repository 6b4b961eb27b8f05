"""MovieLens releases in their native formats, written small into tmp_path (never real data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mfrec.data.movielens as movielens
from mfrec.data.movielens import MovieLens
from mfrec.data.releases import RELEASES, Release
from mfrec.errors import ConfigError, DataError

# (user, movie, rating, timestamp) in file order; user 2 and movie 50 come first in the file but not in id order
RATINGS = [(20, 50, 4.0, 881250949), (3, 7, 3.0, 891717742), (20, 7, 1.0, 878887116), (100, 9, 5.0, 880000000), (3, 50, 2.0, 879000000)]
HALF_STARS = [(u, m, r - 0.5 if r > 1 else r, t) for u, m, r, t in RATINGS]
TITLES = {7: "Café (1995)", 9: "American President, The (1995)", 50: "Heat (1995)", 60: "Never Rated (1999)"}
CSV_RELEASES = ["ml-20m", "ml-25m", "ml-32m", "ml-latest", "ml-latest-small"]


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("MFREC_CACHE_DIR", str(folder))
    return folder


def write_release(root: Path, name: str, ratings=None) -> Path:
    """Write a tiny copy of release ``name`` in its own layout, separators and encoding."""
    release = RELEASES[name]
    folder = root / release.folder
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ratings or (HALF_STARS if release.rating_scale[0] == 0.5 else RATINGS)
    if name == "ml-100k":
        lines = [f"{u}\t{m}\t{int(r)}\t{t}" for u, m, r, t in ratings]
        movies = [f"{m}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|" + "|".join("0" * 19) for m, title in TITLES.items()]
        movies_text = "\n".join(movies) + "\n"
    elif release.separator == "::":
        number = "{:g}" if name == "ml-10m" else "{:.0f}"
        lines = [f"{u}::{m}::{number.format(r)}::{t}" for u, m, r, t in ratings]
        movies_text = "".join(f"{m}::{title}::Comedy|Drama\n" for m, title in TITLES.items())
    else:
        lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r:.1f},{t}" for u, m, r, t in ratings]
        quoted = {m: f'"{title}"' if "," in title else title for m, title in TITLES.items()}
        movies_text = "movieId,title,genres\n" + "".join(f"{m},{title},Comedy|Drama\n" for m, title in quoted.items())
    (folder / release.ratings_file).write_text("\n".join(lines) + "\n", encoding="ascii")
    (folder / release.movies_file).write_bytes(movies_text.encode(release.encoding))
    return folder


def triples(ratings) -> list[tuple]:
    """(raw user, raw movie, rating, timestamp) of each loaded rating, in order."""
    return [
        (ratings.user_ids[u], ratings.movie_ids[m], r, t)
        for u, m, r, t in zip(ratings.users.tolist(), ratings.movies.tolist(), ratings.ratings.tolist(), ratings.timestamps.tolist())
    ]


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-10m", *CSV_RELEASES])
def test_each_release_format_loads_with_sorted_ids_and_aligned_titles(tmp_path: Path, name: str):
    write_release(tmp_path, name)
    ratings = MovieLens(name, root=tmp_path, download=False).load()
    release = RELEASES[name]
    expected = HALF_STARS if release.rating_scale[0] == 0.5 else RATINGS
    assert triples(ratings) == [tuple(row) for row in expected]  # file order, raw ids preserved
    assert ratings.user_ids == [3, 20, 100] and ratings.movie_ids == [7, 9, 50]
    assert all(type(raw) is int for raw in ratings.user_ids + ratings.movie_ids)
    assert ratings.movie_titles == [TITLES[7], TITLES[9], TITLES[50]]  # 60 has no ratings: not a movie
    assert ratings.rating_scale == release.rating_scale
    assert ratings.users.dtype == ratings.movies.dtype == ratings.timestamps.dtype == torch.int64
    assert ratings.ratings.dtype == torch.float32


def test_ml_100k_titles_are_latin_1_and_pipe_separated(tmp_path: Path):
    folder = write_release(tmp_path, "ml-100k")
    assert "Café".encode("latin-1") in (folder / "u.item").read_bytes()
    assert MovieLens("ml-100k", root=tmp_path, download=False).load().movie_titles[0] == "Café (1995)"


def test_a_movie_without_a_title_is_named_by_its_raw_id(tmp_path: Path):
    write_release(tmp_path, "ml-1m", ratings=RATINGS + [(3, 12345, 4.0, 1)])
    ratings = MovieLens("ml-1m", root=tmp_path, download=False).load()
    assert ratings.movie_ids[-1] == 12345 and ratings.movie_titles[-1] == "12345"


def test_ratings_outside_the_release_scale_are_rejected(tmp_path: Path):
    folder = write_release(tmp_path, "ml-100k", ratings=RATINGS + [(5, 7, 0.0, 1)])
    with pytest.raises(DataError) as error:
        MovieLens("ml-100k", root=tmp_path, download=False).load()
    assert f"{folder / 'u.data'}, line 6: '5\\t7\\t0\\t1'" in str(error.value)
    assert "outside the declared rating scale [1, 5]" in str(error.value)


def test_a_malformed_double_colon_line_is_rejected(tmp_path: Path):
    folder = write_release(tmp_path, "ml-1m")
    with (folder / "ratings.dat").open("a") as stream:
        stream.write("7::8:5::9\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 6: '7::8:5::9': has 3 fields, fewer than the 4"):
        MovieLens("ml-1m", root=tmp_path, download=False).load()


def test_wrong_encoding_suggests_another_and_can_be_overridden(tmp_path: Path):
    folder = write_release(tmp_path, "ml-10m")
    (folder / "movies.dat").write_bytes("7::Café (1995)::Comedy\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        MovieLens("ml-10m", root=tmp_path, download=False).load()
    assert f"{folder / 'movies.dat'}, line 1" in str(error.value) and "encoding=latin-1" in str(error.value)
    ratings = MovieLens("ml-10m", root=tmp_path, download=False, encoding="latin-1").load()
    assert ratings.movie_titles[0] == "Café (1995)"


def test_second_load_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_release(tmp_path, "ml-25m")
    first = MovieLens("ml-25m", root=tmp_path, download=False).load()
    assert list((tmp_path / "ml-25m" / ".mfrec-cache").glob("ratings.csv-*.pt"))

    def fail(*args, **kwargs):
        raise AssertionError("parsed although a valid cache exists")

    monkeypatch.setattr(movielens, "read_ratings", fail)
    second = MovieLens("ml-25m", root=tmp_path, download=False).load()
    assert triples(second) == triples(first) and second.movie_titles == first.movie_titles


# --------------------------------------------------------------------------- folds


def write_fold(folder: Path, fold: str, train: list[tuple], test: list[tuple]) -> None:
    for part, rows in (("base", train), ("test", test)):
        (folder / f"{fold}.{part}").write_text("".join(f"{u}\t{m}\t{int(r)}\t{t}\n" for u, m, r, t in rows))


def test_predefined_fold_positions_point_at_the_fold_ratings(tmp_path: Path):
    folder = write_release(tmp_path, "ml-100k")
    train_rows, test_rows = [RATINGS[4], RATINGS[0], RATINGS[2]], [RATINGS[3], RATINGS[1]]
    write_fold(folder, "u3", train_rows, test_rows)
    source = MovieLens("ml-100k", root=tmp_path, download=False)
    ratings = source.load()
    train, test = source.fold_indices(ratings, "u3")
    assert train.dtype == test.dtype == torch.int64
    assert train.tolist() == [4, 0, 2] and test.tolist() == [3, 1]
    assert triples(ratings.subset(test)) == [tuple(row) for row in test_rows]


def test_unknown_fold_and_releases_without_folds_are_config_errors(tmp_path: Path):
    write_release(tmp_path, "ml-100k")
    source = MovieLens("ml-100k", root=tmp_path, download=False)
    with pytest.raises(ConfigError, match=r"unknown fold 'u9'.*valid: u1, u2, u3, u4, u5, ua, ub") as error:
        source.fold_indices(source.load(), "u9")
    assert error.value.key == "data.fold"
    write_release(tmp_path, "ml-1m")
    other = MovieLens("ml-1m", root=tmp_path, download=False)
    with pytest.raises(ConfigError, match="has no predefined folds") as error:
        other.fold_indices(other.load(), "u1")
    assert error.value.key == "data.fold"


def test_missing_fold_file_and_foreign_fold_ratings_are_data_errors(tmp_path: Path):
    folder = write_release(tmp_path, "ml-100k")
    source = MovieLens("ml-100k", root=tmp_path, download=False)
    ratings = source.load()
    with pytest.raises(DataError, match=r"u1.base is missing.*mfrec-data download ml-100k"):
        source.fold_indices(ratings, "u1")
    write_fold(folder, "ua", [RATINGS[0]], [RATINGS[1], (3, 9, 4.0, 5)])
    with pytest.raises(DataError, match=r"ua.test, line 2: user 3 rated movie 9 here, but u.data as loaded has no such rating"):
        source.fold_indices(ratings, "ua")


# --------------------------------------------------------------------------- missing files and downloading


def test_missing_release_says_where_and_how_to_get_it(tmp_path: Path):
    with pytest.raises(DataError) as error:
        MovieLens("ml-10m", root=tmp_path, download=False).load()
    text = str(error.value)
    assert str(tmp_path / "ml-10M100K") in text and "ratings.dat" in text and "movies.dat" in text
    assert "mfrec-data download ml-10m" in text and "MFREC_DATA_DIR" in text and "paths.data_dir" in text


def test_unknown_release_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown MovieLens release 'ml-7m'"):
        MovieLens("ml-7m")


def test_root_defaults_to_the_data_dir_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MFREC_DATA_DIR", str(tmp_path))
    assert MovieLens("ml-1m").folder == tmp_path / "ml-1m"


@pytest.fixture
def fake_downloader(monkeypatch: pytest.MonkeyPatch) -> list:
    """A stand-in ensure_release (tests/test_download.py covers the real one) that writes the files."""
    calls: list[tuple[Release, Path]] = []

    def ensure_release(release: Release, root: Path) -> Path:
        calls.append((release, root))
        return write_release(root, release.name)

    monkeypatch.setattr(movielens, "ensure_release", ensure_release)
    return calls


def test_load_never_downloads(tmp_path: Path, fake_downloader: list):
    with pytest.raises(DataError, match="not found"):
        MovieLens("ml-1m", root=tmp_path, download=True).load()
    assert fake_downloader == []


def test_prepare_downloads_missing_files_when_allowed(tmp_path: Path, fake_downloader: list):
    source = MovieLens("ml-1m", root=tmp_path, download=True)
    assert source.prepare() == tmp_path / "ml-1m"
    assert fake_downloader == [(RELEASES["ml-1m"], tmp_path)]
    assert len(source.load()) == len(RATINGS)
    source.prepare()  # present now: no second download
    assert len(fake_downloader) == 1


def test_prepare_without_download_reports_the_missing_files(tmp_path: Path, fake_downloader: list):
    with pytest.raises(DataError, match="missing ratings.dat, movies.dat"):
        MovieLens("ml-1m", root=tmp_path, download=False).prepare()
    assert fake_downloader == []


