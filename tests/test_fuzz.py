"""Property-based fuzzing: whatever bytes or config values arrive, mfrec answers with its own clear
error or a valid dataset, never an unhandled exception and never a partial cache on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict

from mfrec.config import validate_config
from mfrec.data.csv_source import CsvRatings
from mfrec.data.movielens import MovieLens
from mfrec.data.ratings import Ratings
from mfrec.errors import ConfigError, DataError

# Derandomized: every CI run tries the same cases, so a new failure means a change, not luck.
# A longer random campaign: MFREC_FUZZ_EXAMPLES=5000 MFREC_FUZZ_RANDOM=1 python -m pytest tests/test_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("MFREC_FUZZ_EXAMPLES", "300")),
    derandomize=not os.environ.get("MFREC_FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

VALID_CSV = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,3.5,101\n2,10,5.0,102\n3,12,0.5,103\n"
VALID_U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t242\t1\t878887116\n"
VALID_U_ITEM = "242|Kolya (1996)|24-Jan-1997||http://x|0|0\n302|L.A. Confidential (1997)|01-Jan-1997||http://y|0|0\n"

# Pieces that break files in the ways real files break: separators, quotes, huge and odd numbers,
# unicode, empty fields, stray line ends.
NASTY = st.sampled_from([
    ",", ",,", "\t", "::", "|", '"', "\n", "\r\n", " ", "", "-", ".", "e", "1e400", "nan", "NaN", "inf", "-1",
    "99999999999999999999999", "0x1F", "é", "\u00e9\u4e2d", "\x00", "\ufeff", "4.5.6", "None", "true",
])


@st.composite
def mutated(draw, text: str) -> bytes:
    """``text`` with a few random edits: cut, insert a nasty piece, delete a span, or truncate."""
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "truncate", "replace"]))
        if edit == "insert":
            text = text[:position] + draw(NASTY) + text[position:]
        elif edit == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 8)):]
        elif edit == "truncate":
            text = text[:position]
        else:
            text = text[:position] + draw(NASTY) + text[position + 1:]
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def assert_valid(ratings: Ratings) -> None:
    assert len(ratings) > 0
    assert ratings.users.dtype == torch.int64 and ratings.movies.dtype == torch.int64
    assert int(ratings.users.max()) < ratings.num_users and int(ratings.movies.max()) < ratings.num_movies
    assert torch.isfinite(ratings.ratings).all()
    low, high = ratings.rating_scale
    assert ((ratings.ratings >= low) & (ratings.ratings <= high)).all()
    assert len(ratings.movie_titles) == ratings.num_movies


def assert_no_partial_cache(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.is_file() and (".tmp" in p.name or ".part" in p.name)]
    assert not leftovers


def load_or_refuse(load) -> None:
    try:
        assert_valid(load())
    except (DataError, ConfigError) as error:
        assert str(error)  # our own error, with a message


@FUZZ
@given(content=st.one_of(st.binary(max_size=400), mutated(VALID_CSV)))
def test_csv_source_survives_any_bytes(content: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ratings.csv"
        path.write_bytes(content)
        load_or_refuse(lambda: CsvRatings(path, timestamp_col="timestamp").load())
        assert_no_partial_cache(Path(folder))


@FUZZ
@given(ratings=mutated(VALID_U_DATA), items=mutated(VALID_U_ITEM))
def test_movielens_100k_reader_survives_mutated_files(ratings: bytes, items: bytes):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "ml-100k"
        folder.mkdir()
        (folder / "u.data").write_bytes(ratings)
        (folder / "u.item").write_bytes(items)
        load_or_refuse(lambda: MovieLens("ml-100k", root=root, download=False).load())
        assert_no_partial_cache(folder)


@FUZZ
@given(ratings=mutated("1::10::5::978300760\n2::10::3::978302109\n2::11::4::978301968\n"),
       movies=mutated("10::Toy Story (1995)::Animation\n11::Jumanji (1995)::Adventure\n"))
def test_movielens_1m_reader_survives_mutated_files(ratings: bytes, movies: bytes):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "ml-1m"
        folder.mkdir()
        (folder / "ratings.dat").write_bytes(ratings)
        (folder / "movies.dat").write_bytes(movies)
        load_or_refuse(lambda: MovieLens("ml-1m", root=root, download=False).load())
        assert_no_partial_cache(folder)


WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
CHECKED_KEYS = [
    "model.embedding_dim", "model.l2", "model.init_std", "optimizer.lr", "data.batch_size", "data.eval_batch_size",
    "data.batches_per_chunk", "data.val_fraction", "data.test_fraction", "trainer.max_epochs", "seed",
    "report.top_k", "report.users", "metrics.ks", "metrics.max_users", "metrics.chunk_size",
]


@pytest.fixture(scope="module")
def base_config(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from mfrec.app import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path_factory.mktemp('run')}"])


@FUZZ
@given(key=st.sampled_from(CHECKED_KEYS), value=WRONG_VALUES)
def test_config_values_of_any_type_are_accepted_or_refused_by_name(base_config, key: str, value):
    cfg = OmegaConf.create(OmegaConf.to_container(base_config))
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    try:
        validate_config(cfg)
    except ConfigError as error:
        assert error.key == key
