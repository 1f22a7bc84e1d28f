"""Moved to :mod:`sm_imgclf.runtime.models`; ``sm_imgclf.models.registry`` keeps working."""
