"""Moved to ``contracts.deploy`` (BatchSpec) and ``runtime.serving.folder``; this path works."""

from sm_imgclf.contracts.deploy import BatchSpec
from sm_imgclf.runtime.serving.folder import predict_folder

__all__ = ["BatchSpec", "predict_folder"]
