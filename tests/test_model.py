import torch

from mfrec.model import MatrixFactorization


def test_prediction_is_the_dot_product_of_user_and_movie_embeddings():
    model = MatrixFactorization(num_users=3, num_movies=2, embedding_dim=4)
    user, movie = torch.tensor([0, 2]), torch.tensor([1, 1])
    expected = (model.user_embedding.weight[user] * model.movie_embedding.weight[movie]).sum(1)
    torch.testing.assert_close(model(user, movie), expected)


def test_default_initialisation_draws_the_embeddings_first_from_the_torch_seed():
    torch.manual_seed(11)
    users, movies = torch.nn.Embedding(5, 3), torch.nn.Embedding(4, 3)
    torch.manual_seed(11)
    model = MatrixFactorization(5, 4, 3)
    torch.testing.assert_close(model.user_embedding.weight, users.weight)
    torch.testing.assert_close(model.movie_embedding.weight, movies.weight)


def test_biases_start_at_the_global_mean():
    model = MatrixFactorization(2, 2, 3, use_biases=True, init_std=1e-9, global_mean=3.5)
    prediction = model(torch.tensor([0, 1]), torch.tensor([1, 0]))
    torch.testing.assert_close(prediction, torch.tensor([3.5, 3.5]))


def test_init_std_scales_the_embeddings():
    torch.manual_seed(0)
    model = MatrixFactorization(1000, 1000, 8, init_std=0.01)
    assert 0.008 < model.user_embedding.weight.std().item() < 0.012


def test_l2_penalty_covers_only_the_rows_in_the_batch():
    model = MatrixFactorization(3, 3, 2, use_biases=True)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [9.0, 9.0], [0.0, 2.0]]))
        model.movie_embedding.weight.fill_(0.0)
        model.user_bias.weight.copy_(torch.tensor([[1.0], [5.0], [0.0]]))
    # users 0 and 2: (1 + 1) and (4 + 0), averaged
    assert model.l2_penalty(torch.tensor([0, 2]), torch.tensor([0, 1]), l2=1.0, bias_l2=1.0).item() == 3.0
    # embeddings and biases weighted separately: (1 + 0.5 * 1) and (4 + 0), averaged
    assert model.l2_penalty(torch.tensor([0, 2]), torch.tensor([0, 1]), l2=1.0, bias_l2=0.5).item() == 2.75


def test_l2_count_weights_regularize_busy_rows_less_per_rating():
    model = MatrixFactorization(3, 2, 2)
    # user 0 rated 4 movies, user 1 one, user 2 none; the rated users' mean count is 2.5
    model.set_l2_count_weights(torch.tensor([4, 1, 0]), torch.tensor([3, 2]), exponent=0.5)
    assert torch.allclose(model.user_l2_weight, torch.tensor([(4 / 2.5) ** -0.5, (1 / 2.5) ** -0.5, 1.0]))
    # exponent 1: every rated row pays the same total, count x weight
    model.set_l2_count_weights(torch.tensor([4, 1, 0]), torch.tensor([3, 2]), exponent=1.0)
    totals = torch.tensor([4.0, 1.0]) * model.user_l2_weight[:2]
    assert torch.allclose(totals, totals[0].expand(2))
    # exponent 0 (the default): every rating pays the same
    model.set_l2_count_weights(torch.tensor([4, 1, 0]), torch.tensor([3, 2]), exponent=0.0)
    assert torch.equal(model.movie_l2_weight, torch.ones(2))
