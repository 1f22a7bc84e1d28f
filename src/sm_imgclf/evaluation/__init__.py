"""Evaluation of an endpoint: scores, calibration, the report, its gallery and explanations."""
