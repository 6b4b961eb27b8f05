"""Plain SGD on MatrixFactorization's training loss in one fused update, without autograd.

The loss of a batch of (user u, movie i, rating r) triples is the one MFModule trains by autograd:

    reduce over the batch of  (prediction - r)^2 + l2 (w_u |p_u|^2 + w_i |q_i|^2) + bias_l2 (b_u^2 + b_i^2)

(``reduce`` = mean or sum, the biases b only with ``use_biases``, w the rows' count weights of
``MatrixFactorization.set_l2_count_weights``). Its gradient touches only the batch's rows; per
rating, with ``err = prediction - r`` and ``s`` = 1/batch size (mean) or 1 (sum):

    d/dp_u = 2s (err q_i + l2 w_u p_u)    d/dq_i = 2s (err p_u + l2 w_i q_i)
    d/db_u = 2s (err + bias_l2 b_u)       d/db_i = 2s (err + bias_l2 b_i)

SGD subtracts ``lr`` times these from the rows, a row's ratings in the batch adding up
(``index_add_``): the step ``loss.backward(); torch.optim.SGD(...).step()`` takes, up to float
rounding, without an autograd graph, gradient tensors or an optimizer pass. This is Surprise's SVD
update, a batch at a time; under ``torch.compile`` the gathers, the error and the row updates
become a couple of loops over the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from mfrec.model import MatrixFactorization


def sgd_update(
    user_embedding: torch.Tensor,
    movie_embedding: torch.Tensor,
    user_bias: torch.Tensor | None,
    movie_bias: torch.Tensor | None,
    global_mean: torch.Tensor,
    user_l2_weight: torch.Tensor,
    movie_l2_weight: torch.Tensor,
    user: torch.Tensor,
    movie: torch.Tensor,
    rating: torch.Tensor,
    lr: torch.Tensor,
    l2: float,
    bias_l2: float,
    scale: float,
) -> torch.Tensor:
    """Update the weights in place (see the module doc); returns the batch's loss before the step.

    Takes the weight tensors rather than the model so that a compiled version is shared by every
    model of the same shapes. ``lr`` is a 0-dim tensor, so a changing learning rate recompiles nothing.
    """
    user_rows, movie_rows = user_embedding[user], movie_embedding[movie]
    prediction = (user_rows * movie_rows).sum(1)
    if user_bias is not None:
        user_offset, movie_offset = user_bias[user], movie_bias[movie]  # [batch, 1]
        prediction = prediction + global_mean + user_offset.squeeze(1) + movie_offset.squeeze(1)
    err = prediction - rating
    user_l2, movie_l2 = l2 * user_l2_weight[user], l2 * movie_l2_weight[movie]  # [batch]
    loss = err.square() + user_l2 * user_rows.square().sum(1) + movie_l2 * movie_rows.square().sum(1)
    if user_bias is not None:
        loss = loss + bias_l2 * (user_offset.square() + movie_offset.square()).squeeze(1)
    step = 2 * scale * lr
    scaled_err = (step * err).unsqueeze(1)
    # Each row shrinks by these fractions per rating it has in the batch.
    user_decay, movie_decay = (step * user_l2).unsqueeze(1), (step * movie_l2).unsqueeze(1)
    user_embedding.index_add_(0, user, scaled_err * movie_rows + user_decay * user_rows, alpha=-1)
    movie_embedding.index_add_(0, movie, scaled_err * user_rows + movie_decay * movie_rows, alpha=-1)
    if user_bias is not None:
        bias_decay = step * bias_l2
        user_bias.index_add_(0, user, scaled_err + bias_decay * user_offset, alpha=-1)
        movie_bias.index_add_(0, movie, scaled_err + bias_decay * movie_offset, alpha=-1)
    return loss.sum() * scale


@functools.cache
def _compiled_sgd_update() -> Callable[..., torch.Tensor]:
    """``sgd_update`` compiled on first use, once per process. Dynamic shapes: one kernel for every
    batch size (an epoch's last batch is shorter) and every table size."""
    return torch.compile(sgd_update, dynamic=True)


@torch.no_grad()
def sgd_step(
    model: MatrixFactorization,
    user: torch.Tensor,
    movie: torch.Tensor,
    rating: torch.Tensor,
    lr: float,
    l2: float = 0.0,
    bias_l2: float = 0.0,
    reduction: str = "mean",
    compile: bool = False,
) -> torch.Tensor:
    """One SGD step of ``model`` on a batch, in place; returns the batch's loss (reduced as asked)."""
    update = _compiled_sgd_update() if compile else sgd_update
    biases = (model.user_bias.weight, model.movie_bias.weight) if model.use_biases else (None, None)
    return update(
        model.user_embedding.weight, model.movie_embedding.weight, *biases, model.global_mean,
        model.user_l2_weight, model.movie_l2_weight,
        user, movie, rating, torch.tensor(lr, dtype=rating.dtype, device=rating.device), float(l2), float(bias_l2),
        1.0 / len(rating) if reduction == "mean" else 1.0,
    )
