"""Bayesian search with `mfrec-train hparams_search=...`: studies that persist, resume, prune and record failures."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.mfrec_optuna_sweeper._search_space import parse_search_space
from mfrec.errors import ConfigError
from mfrec.train import train

DIVERGES = "hydra.sweeper.enqueue_trials=[{optimizer.lr:1e9}]"  # tried first; the loss becomes inf in epoch 0


def search(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "mfrec.train", "hparams_search=toy", f"hydra.sweep.dir={sweep_dir}", *overrides]


def load_study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="toy", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def finished(log: Path) -> int:
    """How many trials the sweeper has logged an outcome for ("Trial 3: ...", "Trial 4 pruned ...")."""
    return len(re.findall(r"\] Trial \d+(?::| failed| pruned)", log.read_text()))


@pytest.mark.slow
def test_a_killed_study_rerun_continues_to_n_trials_with_the_diverged_trial_failed(tmp_path):
    sweep_dir, log = tmp_path / "study", tmp_path / "first.log"
    with log.open("w") as output:
        first = subprocess.Popen(search(sweep_dir, DIVERGES), stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while first.poll() is None and finished(log) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        first.kill()  # SIGKILL: no chance to clean up, like a lost machine
        first.wait()
    before = load_study(sweep_dir).get_trials()
    done_before = [t for t in before if t.state.is_finished()]
    assert 3 <= len(done_before) < 6, log.read_text()

    again = subprocess.run(search(sweep_dir, DIVERGES), capture_output=True, text=True, check=True)

    trials = load_study(sweep_dir).get_trials()
    done = [t for t in trials if t.state.is_finished()]
    assert len(done) == 6  # n_trials is the study's total: the re-run made up only the missing ones
    new_numbers = [t.number for t in trials if t.number not in {b.number for b in done_before}]
    assert min(n for n in new_numbers if trials[n].state.is_finished()) > max(t.number for t in before)
    assert [t.state for t in trials].count(TrialState.RUNNING) <= 1  # the trial the kill cut short
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [0] and failed[0].params["optimizer.lr"] == 1e9
    assert "DivergenceError: training diverged in epoch 0" in failed[0].user_attrs["fail_reason"]
    for trial in done:  # each trial's run directory is named after its number
        # each trial in its own job directory, "<trial number>-<its values>" (mfrec.sweeps.naming)
        (trial_dir,) = sweep_dir.glob(f"{trial.number}-*")
        assert (trial_dir / ".hydra" / "overrides.yaml").exists()

    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    study = load_study(sweep_dir)
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params
    assert results["optimized_metric"] == "val/rmse_best" and results["direction"] == "minimize"
    counts = results["trials"]
    assert counts["failed"] == 1 and counts["complete"] + counts["pruned"] + counts["failed"] == 6
    assert f"Best trial {study.best_trial.number}: val/rmse_best = " in again.stdout
    assert f"{6 - len(done_before)} more" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_misspelled_optimized_metric_stops_the_study_at_its_first_trial(tmp_path):
    sweep_dir = tmp_path / "study"
    done = subprocess.run(search(sweep_dir, "optimized_metric=val/rmse_bset"), capture_output=True, text=True)
    assert done.returncode == 1
    assert "mfrec-train: error: trial 0 stopped the study: config key 'optimized_metric': 'val/rmse_bset' " \
           "was not logged by this run; logged metrics: train/loss, val/mae, val/rmse, val/rmse_best" in done.stderr
    (trial,) = load_study(sweep_dir).get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["interrupted"]  # not counted toward n_trials


def test_a_trial_reports_each_epoch_and_is_pruned_when_worse_than_the_others(make_config, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="pruning", storage=storage)
    for value in (0.1, 0.2):  # two earlier trials far better at every epoch
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={epoch: value for epoch in range(20)}))
    trial = study.ask()
    optuna_trial = (
        f"optuna_trial={{_target_:mfrec.pruning.OptunaPruning,storage:'{storage}',study_name:pruning,"
        f"trial_number:{trial.number},pruner:{{_target_:optuna.pruners.MedianPruner,n_startup_trials:2,n_warmup_steps:2}}}}"
    )
    with pytest.raises(optuna.TrialPruned, match=r"after epoch 2: val/rmse = "):
        train(make_config("data.val_fraction=0.3", "trainer.max_epochs=20", "print_config=false", optuna_trial))
    assert sorted(study.trials[trial.number].intermediate_values) == [0, 1, 2]  # one report per epoch


def test_the_search_space_is_written_in_hydras_sweep_grammar():
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.embedding_dim": "choice(16, 32, 64)",
        "data.batch_size": "range(256, 2049, 256)",
        "trainer.max_epochs": "tag(int, interval(5, 30))",
    }
    # On the command line: a value fixes a searched key, a sweep adds (or replaces) a dimension.
    arguments = ["hparams_search=ml100k", "model.embedding_dim=8", "model.l2=0.01,0.1", "data.fold=u1"]
    space = parse_search_space(params, arguments, OverridesParser.create())
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "data.batch_size": IntDistribution(256, 2048, step=256),
        "trainer.max_epochs": IntDistribution(5, 30),
        "model.l2": CategoricalDistribution([0.01, 0.1]),
    }
    assert space.fixed == ["hparams_search=ml100k", "model.embedding_dim=8", "data.fold=u1"]
    overrides = space.overrides({"optimizer.lr": 0.003, "data.batch_size": 512, "trainer.max_epochs": 7, "model.l2": 0.1})
    assert overrides[3:] == ["optimizer.lr=0.003", "data.batch_size=512", "trainer.max_epochs=7", "model.l2=0.1"]


def test_a_list_choice_is_searched_as_its_override_text():
    (dimension,) = parse_search_space({"metrics.ks": "choice([5,10],[20])"}, [], OverridesParser.create()).dimensions
    assert dimension.distribution.choices == ("[5,10]", "[20]")
    assert dimension.override("[5,10]") == "metrics.ks=[5,10]"


@pytest.mark.parametrize(
    "sweep, message",
    [
        ("tag(loog, interval(1e-4, 1e-1))", "unknown tag loog"),
        ("tag(log, interval(0, 1))", "in 'optimizer.lr=tag(log, interval(0, 1))': `low > 0` must hold for `log=True`"),
        ("tag(log, choice(0.1, 0.01))", "choice() takes no tags"),
    ],
)
def test_a_search_space_mistake_names_the_key(sweep, message):
    with pytest.raises(ConfigError, match=r"config key 'optimizer\.lr': .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space({"optimizer.lr": sweep}, [], OverridesParser.create())


def test_hydras_plugin_scan_does_not_import_optuna():
    # Hydra imports every hydra_plugins module on every run: a plain mfrec-train must not pay for Optuna.
    code = "import sys; from hydra.core.plugins import Plugins; Plugins.instance(); print('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
