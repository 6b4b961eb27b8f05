"""mfrec's Optuna sweeper: Bayesian hyper-parameter search with persistent, resumable studies (Optuna >= 4)."""
