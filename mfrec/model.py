"""The seed's matrix-factorization model: a rating is the dot product of a user and a movie embedding."""

from __future__ import annotations

import torch
from torch import nn


class MatrixFactorization(nn.Module):
    """Predicts ``rating(user, movie) = <user_embedding[user], movie_embedding[movie]>``.

    With ``use_biases`` it becomes biased MF: ``global_mean + user_bias + movie_bias + <u, m>``.
    ``init_std=None`` keeps ``nn.Embedding``'s default N(0, 1) initialisation, as in the seed.
    ``sparse`` makes the embeddings' gradients sparse (only the rows a batch touches), for
    optimizers that take them (SGD, SparseAdam, Adagrad): a step then costs in proportion to the
    batch, not to the number of users and movies.
    """

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        embedding_dim: int,
        use_biases: bool = False,
        init_std: float | None = None,
        global_mean: float = 0.0,
        sparse: bool = False,
    ):
        super().__init__()
        # Created first and in this order: with the same torch seed these draw exactly the
        # random numbers the seed's script draws, which is what makes seed parity possible.
        self.user_embedding = nn.Embedding(num_users, embedding_dim, sparse=sparse)
        self.movie_embedding = nn.Embedding(num_movies, embedding_dim, sparse=sparse)
        if init_std is not None:
            nn.init.normal_(self.user_embedding.weight, std=init_std)
            nn.init.normal_(self.movie_embedding.weight, std=init_std)
        self.use_biases = use_biases
        if use_biases:
            self.user_bias = nn.Embedding(num_users, 1, sparse=sparse)
            self.movie_bias = nn.Embedding(num_movies, 1, sparse=sparse)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.movie_bias.weight)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        # Users and movies with training ratings; the others' rows were never trained, so
        # `predict` falls back to the global mean plus the biases that are known.
        self.register_buffer("user_known", torch.ones(num_users, dtype=torch.bool))
        self.register_buffer("movie_known", torch.ones(num_movies, dtype=torch.bool))
        # How strongly each row's L2 penalty counts per rating (`set_l2_count_weights`); derived from
        # the training data whenever a run starts, so not saved in checkpoints.
        self.register_buffer("user_l2_weight", torch.ones(num_users), persistent=False)
        self.register_buffer("movie_l2_weight", torch.ones(num_movies), persistent=False)

    def forward(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        user_embedded = self.user_embedding(user)
        movie_embedded = self.movie_embedding(movie)
        prediction = (user_embedded * movie_embedded).sum(1)
        if self.use_biases:
            prediction = (
                prediction
                + self.global_mean
                + self.user_bias(user).squeeze(1)
                + self.movie_bias(movie).squeeze(1)
            )
        return prediction

    def predict(self, user: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """Predictions for any (user, movie), with the cold-start fallback for untrained rows."""
        dot = (self.user_embedding(user) * self.movie_embedding(movie)).sum(1)
        user_known, movie_known = self.user_known[user], self.movie_known[movie]
        if not self.use_biases:
            return torch.where(user_known & movie_known, dot, self.global_mean)
        user_bias = torch.where(user_known, self.user_bias(user).squeeze(1), 0.0)
        movie_bias = torch.where(movie_known, self.movie_bias(movie).squeeze(1), 0.0)
        return self.global_mean + user_bias + movie_bias + torch.where(user_known & movie_known, dot, 0.0)

    def score_all(self, user: torch.Tensor) -> torch.Tensor:
        """``predict`` for every movie: a [len(user), num_movies] matrix, for full ranking.

        Built in place, with at most two such matrices alive at once: 1,024 users x 59,047 movies
        is 240 MB each.
        """
        dot = self.user_embedding(user) @ self.movie_embedding.weight.T
        fallback = 0.0 if self.use_biases else self.global_mean  # where a user or the movie is unknown
        dot.masked_fill_(~self.user_known[user][:, None], fallback)
        dot.masked_fill_(~self.movie_known[None, :], fallback)
        if not self.use_biases:
            return dot
        user_bias = torch.where(self.user_known[user], self.user_bias(user).squeeze(1), 0.0)
        movie_bias = torch.where(self.movie_known, self.movie_bias.weight.squeeze(1), 0.0)
        return ((self.global_mean + user_bias)[:, None] + movie_bias[None, :]).add_(dot)

    def set_l2_count_weights(self, user_counts: torch.Tensor, movie_counts: torch.Tensor, exponent: float) -> None:
        """Scale each row's per-rating L2 penalty by ``(count / mean count) ** -exponent``.

        The penalty is paid once per training rating, so a row's total regularization grows with its
        rating count (``exponent=0``, Funk SVD's choice). ``exponent=1`` makes every row's total the
        same; in between, busy users and popular movies are regularized less per rating.
        """
        for weight, counts in ((self.user_l2_weight, user_counts), (self.movie_l2_weight, movie_counts)):
            counts = counts.to(weight.device, torch.float32)
            rated = counts > 0
            scale = torch.ones_like(counts)
            if exponent and rated.any():
                scale[rated] = (counts[rated] / counts[rated].mean()).pow(-exponent)
            weight.copy_(scale)

    def l2_penalty(
        self, user: torch.Tensor, movie: torch.Tensor, l2: float, bias_l2: float, reduction: str = "mean"
    ) -> torch.Tensor:
        """The weighted squared norms of the parameters each rating touches, averaged (or summed) over the batch."""
        penalty = l2 * (
            self.user_l2_weight[user] * self.user_embedding(user).pow(2).sum(1)
            + self.movie_l2_weight[movie] * self.movie_embedding(movie).pow(2).sum(1)
        )
        if self.use_biases and bias_l2:
            penalty = penalty + bias_l2 * (self.user_bias(user).squeeze(1).pow(2) + self.movie_bias(movie).squeeze(1).pow(2))
        return penalty.mean() if reduction == "mean" else penalty.sum()
