"""Moved to :mod:`sm_imgclf.runtime.job`; ``python -m sm_imgclf.job`` keeps working."""
