"""Tuning: TuningRun and its results (the spec and search space are in ``contracts``)."""
