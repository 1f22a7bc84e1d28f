"""Moved to :mod:`sm_imgclf.runtime.models`; this path keeps working."""

from sm_imgclf.runtime.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HeadSpec,
    build_model,
    check_model_name,
    list_models,
    rebuild_model,
    replace_head,
    set_trainable,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "HeadSpec", "build_model", "check_model_name",
           "list_models", "rebuild_model", "replace_head", "set_trainable"]
