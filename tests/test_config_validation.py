"""Bad config values stop a run before training, with a message naming the key and the valid range."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mfrec.errors import ConfigError, DataError
from mfrec.train import train


@pytest.mark.parametrize(
    "override, key, valid",
    [
        ("model.embedding_dim=0", "model.embedding_dim", "an integer >= 1"),
        ("model.embedding_dim=abc", "model.embedding_dim", "an integer >= 1"),
        ("optimizer.lr=0", "optimizer.lr", "a number > 0"),
        ("optimizer.lr=-0.1", "optimizer.lr", "a number > 0"),
        ("data.batch_size=0", "data.batch_size", "an integer >= 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs", "an integer >= 1"),
        ("model.l2=-1", "model.l2", "a number >= 0"),
        ("model.bias_l2=-0.1", "model.bias_l2", "null (same as model.l2) or a number >= 0"),
        ("model.l2_count_exponent=2", "model.l2_count_exponent", "a number in [0, 1]"),
        ("data.val_fraction=1.5", "data.val_fraction", "[0, 1)"),
        ("report.top_k=0", "report.top_k", "an integer >= 1"),
        ("report.users=[0,9]", "report.users", "user 9 is not in the data (5 users, e.g. 0, 1, 2, 3, 4)"),
        ("+optimizer.lrr=0.1", "optimizer.lrr", "torch.optim.SGD accepts"),
        ("+trainer.max_epoch=3", "trainer.max_epoch", "pytorch_lightning.Trainer accepts"),
        ("+colour=red", "colour", "unknown key"),
        ("+model.num_users=3", "model.num_users", "set by mfrec-train from the data"),
        ("dashboard.projector.max_items=0", "dashboard.projector.max_items", "null (all) or an integer >= 1"),
        ("dashboard.hparams=yes", "dashboard.hparams", "true or false"),
        ("+dashboard.projector.films=true", "dashboard.projector.films", "valid keys here: max_items, movies, users"),
    ],
)
def test_invalid_values_are_refused_before_training(make_config, tmp_path, override, key, valid):
    with pytest.raises(ConfigError) as error:
        train(make_config(override))
    assert error.value.key == key
    assert valid in str(error.value)
    assert not (tmp_path / "checkpoints").exists()


def test_an_all_zero_matrix_is_an_empty_rating_matrix(make_config):
    with pytest.raises(DataError, match="data.source.matrix has no observed ratings"):
        train(make_config("data.source.matrix=[[0,0],[0,0]]", "data.source.movie_names=null", "report.users=[]"))


def test_command_line_error_exits_non_zero_and_leaves_no_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "optimizer.lr=0", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True,
    )
    assert done.returncode != 0
    assert "mfrec-train: error: config key 'optimizer.lr': got 0; valid: a number > 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_misspelled_key_on_the_command_line_is_refused_by_hydra(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "model.embeding_dim=8", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True,
    )
    assert done.returncode != 0
    assert "Key 'embeding_dim' is not in struct" in done.stderr
    assert "full_key: model.embeding_dim" in done.stderr
