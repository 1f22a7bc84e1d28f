"""Training: the estimator, its frozen spec, hyperparameters, and training jobs."""
