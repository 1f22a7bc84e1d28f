"""The local backend: jobs as subprocesses, endpoints as local servers, Optuna's tuner."""
