"""Whole-process wall time of the tutorial's plain PyTorch script vs `mfrec-train` (default experiment).

Both run the same 1000 epochs x 13 ratings with one SGD step per rating; mfrec also writes TensorBoard
events, a checkpoint and its Hydra run directory. Runs alternate (seed, mfrec, seed, mfrec, ...) so
that a noisy machine slows both alike; the medians and their ratio are printed.

    python scripts/benchmark_seed.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The tutorial's script, verbatim but for the seed and a quiet ending.
SEED_SCRIPT = """
import torch
import torch.nn as nn
import torch.optim as optim
torch.manual_seed({seed})
ratings = torch.tensor([[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]], dtype=torch.float32)
movies = ["Movie_A", "Movie_B", "Movie_C", "Movie_D"]
num_users, num_movies = ratings.shape
embedding_dim = 3
num_epochs = 1000
learning_rate = 0.01

class MatrixFactorization(nn.Module):
    def __init__(self, num_users, num_movies, embedding_dim):
        super(MatrixFactorization, self).__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.movie_embedding = nn.Embedding(num_movies, embedding_dim)

    def forward(self, user, movie):
        user_embedded = self.user_embedding(user)
        movie_embedded = self.movie_embedding(movie)
        return (user_embedded * movie_embedded).sum(1)

model = MatrixFactorization(num_users, num_movies, embedding_dim)
criterion = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=learning_rate)
for epoch in range(num_epochs):
    for i in range(num_users):
        for j in range(num_movies):
            if ratings[i][j] > 0:
                optimizer.zero_grad()
                prediction = model(torch.tensor([i]), torch.tensor([j]))
                loss = criterion(prediction, torch.tensor([ratings[i][j]]))
                loss.backward()
                optimizer.step()
target_users = [0, 2]
for user_idx in target_users:
    test_user = torch.tensor([user_idx]*num_movies)
    test_movies = torch.tensor(list(range(num_movies)))
    predictions = model(test_user, test_movies).detach().numpy()
    recommendations = dict(zip(movies, predictions))
    sorted_recommendations = {{k: v for k, v in sorted(recommendations.items(), key=lambda item: item[1], reverse=True)}}
    print(f"Recommended movies for user {{user_idx}}:")
    for movie, rating in sorted_recommendations.items():
        print(f"{{movie}}: Predicted rating {{rating:.2f}}")
"""


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "seed.py"
        script.write_text(SEED_SCRIPT.format(seed=args.seed))
        seed_times, mfrec_times = [], []
        for repeat in range(args.repeats):
            seconds, seed_out = timed([sys.executable, str(script)])
            seed_times.append(seconds)
            run_dir = Path(tmp) / f"run{repeat}"
            seconds, mfrec_out = timed(
                [sys.executable, "-m", "mfrec.train", f"seed={args.seed}", "print_config=false", f"hydra.run.dir={run_dir}"]
            )
            mfrec_times.append(seconds)
            report = [line for line in mfrec_out.splitlines() if line.startswith(("Recommended", "Movie_"))]
            if report != seed_out.splitlines():
                sys.exit("the reports differ:\n" + seed_out + "\n---\n" + "\n".join(report))
            print(f"run {repeat + 1}: seed script {seed_times[-1]:.2f} s, mfrec-train {mfrec_times[-1]:.2f} s", flush=True)

    seed_median, mfrec_median = statistics.median(seed_times), statistics.median(mfrec_times)
    print(f"\n{'':22}{'median wall time':>18}")
    print(f"{'plain PyTorch seed':22}{seed_median:>16.2f} s")
    print(f"{'mfrec-train':22}{mfrec_median:>16.2f} s")
    print(f"ratio mfrec / seed: {mfrec_median / seed_median:.2f}x (target <= 1.50x); reports identical")


if __name__ == "__main__":
    main()
