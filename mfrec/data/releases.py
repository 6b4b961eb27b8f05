"""The MovieLens releases mfrec reads: where GroupLens publishes them and how each lays out its files."""

from __future__ import annotations

from dataclasses import dataclass

from mfrec.errors import ConfigError

GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Release:
    """One MovieLens release: its zip, the folder the zip unpacks to, and its file formats."""

    name: str
    folder: str  # the folder inside the zip, and under the data root
    ratings_file: str
    movies_file: str
    separator: str  # between fields of the ratings file (and of the movies file, unless given below)
    header: bool  # whether both files start with a header line
    encoding: str  # of the movies file (titles)
    rating_scale: tuple[float, float]
    folds: tuple[str, ...] = ()  # predefined train/test folds: <fold>.base and <fold>.test
    movies_separator: str | None = None  # when it differs from the ratings file's (ml-100k's u.item)

    @property
    def url(self) -> str:
        return f"{GROUPLENS}/{self.name}.zip"

    @property
    def md5_url(self) -> str:
        """GroupLens publishes each zip's md5 beside it."""
        return f"{self.url}.md5"

    @property
    def expected_files(self) -> tuple[str, ...]:
        return (self.ratings_file, self.movies_file)


def _csv_release(name: str, folder: str | None = None) -> Release:
    return Release(
        name=name, folder=folder or name, ratings_file="ratings.csv", movies_file="movies.csv",
        separator=",", header=True, encoding="utf-8", rating_scale=(0.5, 5.0),
    )


RELEASES: dict[str, Release] = {
    "ml-100k": Release(
        name="ml-100k", folder="ml-100k", ratings_file="u.data", movies_file="u.item", separator="\t",
        header=False, encoding="latin-1", rating_scale=(1.0, 5.0),
        folds=("u1", "u2", "u3", "u4", "u5", "ua", "ub"), movies_separator="|",
    ),
    "ml-1m": Release(
        name="ml-1m", folder="ml-1m", ratings_file="ratings.dat", movies_file="movies.dat", separator="::",
        header=False, encoding="latin-1", rating_scale=(1.0, 5.0),
    ),
    "ml-10m": Release(
        name="ml-10m", folder="ml-10M100K", ratings_file="ratings.dat", movies_file="movies.dat", separator="::",
        header=False, encoding="utf-8", rating_scale=(0.5, 5.0),
    ),
    "ml-20m": _csv_release("ml-20m"),
    "ml-25m": _csv_release("ml-25m"),
    "ml-32m": _csv_release("ml-32m"),
    "ml-latest": _csv_release("ml-latest"),
    "ml-latest-small": _csv_release("ml-latest-small"),
}


def get_release(name: str) -> Release:
    if name not in RELEASES:
        raise ConfigError("data.source.release", f"unknown MovieLens release '{name}'; valid: {', '.join(RELEASES)}")
    return RELEASES[name]
