"""Moved to :mod:`sm_imgclf.runtime.serving.handler`; this path keeps working."""

from sm_imgclf.runtime.serving.handler import (
    RequestError,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
    transform_fn,
)

__all__ = ["RequestError", "input_fn", "model_fn", "output_fn", "predict_fn", "transform_fn"]
