"""Speed options: sparse gradients, fused SGD, torch.compile, loss reduction, threads: same arithmetic, faster."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from mfrec.data.loader import TripleLoader
from mfrec.errors import ConfigError
from mfrec.fused import sgd_step
from mfrec.model import MatrixFactorization
from mfrec.module import MFModule
from mfrec.train import train
from seed_reference import train_seed

USERS = torch.tensor([0, 1, 1, 3, 6, 0, 2])  # users 0 and 1 twice, movie 2 three times: rows add up
MOVIES = torch.tensor([2, 2, 4, 0, 1, 2, 3])
RATINGS = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.5])


def small_model(use_biases: bool = True, sparse: bool = False) -> MatrixFactorization:
    torch.manual_seed(0)
    return MatrixFactorization(7, 5, 4, use_biases=use_biases, init_std=0.5, global_mean=3.0, sparse=sparse)


def autograd_sgd_step(
    model: MatrixFactorization, lr: float, l2: float, reduction: str, bias_l2: float | None = None
) -> torch.Tensor:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    bias_l2 = l2 if bias_l2 is None else bias_l2
    loss = F.mse_loss(model(USERS, MOVIES), RATINGS, reduction=reduction) + model.l2_penalty(USERS, MOVIES, l2, bias_l2, reduction)
    loss.backward()
    optimizer.step()
    return loss.detach()


def assert_same_weights(model: MatrixFactorization, expected: MatrixFactorization) -> None:
    for (name, actual), wanted in zip(model.named_parameters(), expected.parameters()):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-6, msg=name)


def test_sparse_gradients_are_the_dense_gradients_of_the_batch_rows():
    dense, sparse = small_model(), small_model(sparse=True)
    for model in (dense, sparse):
        (F.mse_loss(model(USERS, MOVIES), RATINGS) + model.l2_penalty(USERS, MOVIES, 0.1, 0.1)).backward()
    for dense_weight, sparse_weight in zip(dense.parameters(), sparse.parameters()):
        assert sparse_weight.grad.is_sparse
        torch.testing.assert_close(sparse_weight.grad.to_dense(), dense_weight.grad)


def test_sgd_steps_the_same_with_sparse_and_dense_gradients():
    dense, sparse = small_model(), small_model(sparse=True)
    for model in (dense, sparse):
        autograd_sgd_step(model, lr=0.1, l2=0.1, reduction="mean")
    assert_same_weights(sparse, dense)


@pytest.mark.parametrize("use_biases", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_fused_sgd_step_is_autograd_and_torch_sgd(use_biases, reduction, l2):
    fused = small_model(use_biases)
    expected = copy.deepcopy(fused)
    expected_loss = autograd_sgd_step(expected, lr=0.1, l2=l2, reduction=reduction)
    loss = sgd_step(fused, USERS, MOVIES, RATINGS, lr=0.1, l2=l2, bias_l2=l2, reduction=reduction)
    torch.testing.assert_close(loss, expected_loss)
    assert_same_weights(fused, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_sgd_step_weights_l2_by_rating_counts_and_biases_apart(reduction):
    fused = small_model()
    counts = torch.bincount(USERS, minlength=7), torch.bincount(MOVIES, minlength=5)
    fused.set_l2_count_weights(*counts, exponent=0.5)
    expected = copy.deepcopy(fused)
    expected_loss = autograd_sgd_step(expected, lr=0.1, l2=0.3, bias_l2=0.05, reduction=reduction)
    loss = sgd_step(fused, USERS, MOVIES, RATINGS, lr=0.1, l2=0.3, bias_l2=0.05, reduction=reduction)
    torch.testing.assert_close(loss, expected_loss)
    assert_same_weights(fused, expected)


def test_summed_loss_makes_lr_a_step_per_rating_whatever_the_batch_size():
    summed, averaged = small_model(), small_model()
    sgd_step(summed, USERS, MOVIES, RATINGS, lr=0.01, reduction="sum")
    sgd_step(averaged, USERS, MOVIES, RATINGS, lr=0.01 * len(RATINGS), reduction="mean")
    assert_same_weights(summed, averaged)


@pytest.mark.slow
def test_compiled_fused_step_equals_the_eager_one():
    compiled, eager = small_model(), small_model()
    for batch in (slice(0, 7), slice(0, 3), slice(2, 7)):  # several batch sizes, one compiled kernel
        compiled_loss = sgd_step(compiled, USERS[batch], MOVIES[batch], RATINGS[batch], 0.1, 0.3, 0.3, "sum", compile=True)
        eager_loss = sgd_step(eager, USERS[batch], MOVIES[batch], RATINGS[batch], 0.1, 0.3, 0.3, "sum")
        torch.testing.assert_close(compiled_loss, eager_loss)
    assert_same_weights(compiled, eager)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", [["model.fused_sgd=true"], ["model.sparse=true"], ["model.compile=true"], ["model.fused_sgd=true", "model.compile=true"]]
)
def test_the_seed_experiment_is_reproduced_by_every_kind_of_step(make_config, tmp_path, options):
    reference = train_seed(42)
    train(make_config(*options, "print_config=false"))
    model = MFModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").model
    users, movies = torch.meshgrid(torch.arange(5), torch.arange(4), indexing="ij")
    with torch.no_grad():
        torch.testing.assert_close(model(users.flatten(), movies.flatten()), reference(users.flatten(), movies.flatten()))


def test_fused_sgd_follows_the_learning_rate_schedule(make_config, tmp_path):
    train(make_config("model.fused_sgd=true", "scheduler=step", "trainer.max_epochs=5", "print_config=false"))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 5 * 13  # one counted optimizer step per rating
    scheduler = checkpoint["lr_schedulers"][0]
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == scheduler["_last_lr"][0]


@pytest.mark.parametrize(
    "overrides, key, message",
    [
        (["model.sparse=true", "optimizer=adam"], "model.sparse", "optimizer=sparse_adam"),
        (["model.sparse=true", "optimizer.momentum=0.9"], "model.sparse", "momentum"),
        (["model.sparse=true", "optimizer=adagrad", "optimizer.weight_decay=0.1"], "model.sparse", "model.l2"),
        (["optimizer=sparse_adam"], "model.sparse", "set model.sparse=true"),
        (["model.fused_sgd=true", "optimizer=adam"], "model.fused_sgd", "optimizer=sgd"),
        (["model.fused_sgd=true", "optimizer.weight_decay=0.01"], "model.fused_sgd", "model.l2"),
        (["model.sparse=true", "model.compile=true"], "model.compile", "model.fused_sgd=true"),
        (["model.loss_reduction=median"], "model.loss_reduction", "mean or sum"),
        (["threads=0"], "threads", "an integer >= 1"),
    ],
)
def test_speed_options_refuse_what_they_cannot_do_before_training(make_config, tmp_path, overrides, key, message):
    with pytest.raises(ConfigError) as error:
        train(make_config(*overrides))
    assert error.value.key == key
    assert message in str(error.value)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("optimizer", [["optimizer=sparse_adam", "optimizer.lr=0.05"], ["optimizer=adagrad", "optimizer.lr=0.1"]])
def test_sparse_adam_and_adagrad_learn_from_sparse_gradients(make_config, optimizer):
    first_epoch = train(make_config("model.sparse=true", *optimizer, "trainer.max_epochs=1", "print_config=false"))
    trained = train(make_config("model.sparse=true", *optimizer, "trainer.max_epochs=100", "print_config=false"))
    assert trained["train/loss"] < first_epoch["train/loss"] / 5


def test_threads_sets_torch_threads_and_extra_callbacks_see_every_epoch(make_config):
    class CountEpochs(pl.Callback):
        epochs = 0

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs += 1

    threads = torch.get_num_threads()
    counter = CountEpochs()
    try:
        train(make_config("threads=1", "trainer.max_epochs=3", "print_config=false"), callbacks=[counter])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert counter.epochs == 3


def test_shuffled_batches_are_slices_of_one_permutation_per_epoch_whatever_the_chunking():
    users = torch.arange(50)
    epochs = {}
    for batches_per_chunk in (1, 3, 64):
        loader = TripleLoader(users, users * 10, users.float(), batch_size=8, shuffle=True, seed=4,
                              batches_per_chunk=batches_per_chunk)  # fmt: skip
        loader.sampler.set_epoch(2)
        batches = [batch for chunk in loader for batch in chunk]
        assert [len(rating) for _, _, rating in batches] == [8] * 6 + [2]
        for user, movie, rating in batches:  # the triples stay aligned
            assert torch.equal(movie, user * 10) and torch.equal(rating, user.float())
        epochs[batches_per_chunk] = torch.cat([user for user, _, _ in batches])
    assert torch.equal(epochs[1], loader.sampler.indices())
    assert torch.equal(epochs[1], epochs[3]) and torch.equal(epochs[1], epochs[64])
