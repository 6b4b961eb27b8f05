"""The tutorial's training loop in plain PyTorch: the reference mfrec must reproduce."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.optim as optim

RATINGS = [[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]]
MOVIES = ["Movie_A", "Movie_B", "Movie_C", "Movie_D"]


class SeedModel(nn.Module):
    def __init__(self, num_users: int, num_movies: int, embedding_dim: int):
        super().__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.movie_embedding = nn.Embedding(num_movies, embedding_dim)

    def forward(self, user, movie):
        return (self.user_embedding(user) * self.movie_embedding(movie)).sum(1)


def train_seed(seed: int, epochs: int = 1000, embedding_dim: int = 3, lr: float = 0.01) -> SeedModel:
    torch.manual_seed(seed)
    ratings = torch.tensor(RATINGS, dtype=torch.float32)
    num_users, num_movies = ratings.shape
    model = SeedModel(num_users, num_movies, embedding_dim)
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        for i in range(num_users):
            for j in range(num_movies):
                if ratings[i][j] > 0:
                    optimizer.zero_grad()
                    loss = criterion(model(torch.tensor([i]), torch.tensor([j])), torch.tensor([ratings[i][j]]))
                    loss.backward()
                    optimizer.step()
    return model


def seed_report(model: SeedModel, target_users=(0, 2)) -> list[str]:
    """The lines the tutorial prints for its target users."""
    lines = []
    num_movies = len(MOVIES)
    for user_idx in target_users:
        predictions = model(torch.tensor([user_idx] * num_movies), torch.tensor(list(range(num_movies)))).detach().numpy()
        recommendations = dict(zip(MOVIES, predictions))
        ranked = sorted(recommendations.items(), key=lambda item: item[1], reverse=True)
        lines.append(f"Recommended movies for user {user_idx}:")
        lines += [f"{movie}: Predicted rating {rating:.2f}" for movie, rating in ranked]
    return lines
