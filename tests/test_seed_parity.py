"""mfrec-train with no arguments is the tutorial's experiment: same numbers, same printout."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mfrec.module import MFModule
from mfrec.train import train
from seed_reference import seed_report, train_seed


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_learned_predictions_match_the_plain_pytorch_loop(make_config, tmp_path, seed):
    reference = train_seed(seed)
    train(make_config(f"seed={seed}"))

    model = MFModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").model
    users, movies = torch.meshgrid(torch.arange(5), torch.arange(4), indexing="ij")
    with torch.no_grad():
        expected = reference(users.flatten(), movies.flatten())
        actual = model(users.flatten(), movies.flatten())
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [1, 3])
def test_report_lines_match_the_tutorials_printout(make_config, capsys, seed):
    expected = seed_report(train_seed(seed))
    train(make_config(f"seed={seed}", "print_config=false"))
    printed = capsys.readouterr().out.splitlines()
    report = [line for line in printed if line.startswith(("Recommended movies", "Movie_"))]
    assert report == expected


def test_mfrec_train_command_prints_the_seed_report(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mfrec.train", "seed=5", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, check=True,
    )
    lines = done.stdout.splitlines()
    start = lines.index("Recommended movies for user 0:")
    assert lines[start : start + 10] == seed_report(train_seed(5))
    assert f"tensorboard --logdir {tmp_path / 'run'}" in done.stdout
