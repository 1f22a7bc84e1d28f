"""Tuning: search spaces, TuningRun, and results."""
