"""Contracts: the pure, frozen vocabulary every other layer speaks.

Specs of training, tuning, deployment and batch jobs; job, tuning-run and
trial states; the hyperparameter schema and the search-space types; the
metric lines a job prints; the Store and Backend protocols. Nothing here does
I/O or imports torch, boto3 or any other part of the library but its base
modules (``errors``, ``_params``, ``_version``).
"""
