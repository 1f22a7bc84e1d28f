"""Training: the estimator and the handle on a training job."""
