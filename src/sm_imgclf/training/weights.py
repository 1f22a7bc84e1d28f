"""Checking an estimator's ``weights`` before any job starts, so mistakes cost nothing."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sm_imgclf._params import bad_value
from sm_imgclf.runtime.sources import Backbone
from sm_imgclf.runtime.weights import PACKAGE_PREFIX, kind_of, package_file, torchvision_weights

_FORMS = (
    "None, 'DEFAULT', a torchvision weights enum name, a local file, an s3:// URI or "
    "'package:module/path'"
)


def check_weights(weights: object, found: Backbone) -> str:
    """Return the weights value a job records (``"none"`` for ``None``), or raise.

    Local files become absolute paths; files inside packages that are not
    installed here are left for the job's container to find.
    """
    if weights is None:
        return "none"
    if not isinstance(weights, str) or not weights:
        raise bad_value("weights", _FORMS, weights)
    kind = kind_of(weights)
    if kind == "default" and found.source == "module" and not found.default_weights:
        raise bad_value(
            "weights",
            "a file, an s3:// URI or 'package:module/path'",
            weights,
            f"{found.model} declares no default weights (@backbone(weights=...)).",
        )
    if kind == "enum":
        _check_enum(weights, found)
    elif kind == "file":
        path = Path(os.path.expanduser(weights)).resolve()
        if not path.is_file():
            raise bad_value(
                "weights",
                "an existing weights file",
                weights,
                f"Nothing at {path}; an s3:// URI also works.",
            )
        return str(path)
    elif kind == "s3":
        bucket, _, key = weights.removeprefix("s3://").partition("/")
        if not bucket or not key or key.endswith("/"):
            raise bad_value("weights", "an s3://bucket/key URI of one file", weights)
    elif kind == "package":
        module = weights.removeprefix(PACKAGE_PREFIX).partition("/")[0]
        if importlib.util.find_spec(module) is not None:
            package_file(weights)  # installed here: the file must be in it
    return weights


def _check_enum(weights: str, found: Backbone) -> None:
    if found.source != "torchvision":
        raise bad_value(
            "weights",
            _FORMS,
            weights,
            f"Weights enum names belong to torchvision models, not {found.model}.",
        )
    torchvision_weights(found.model.removeprefix("torchvision:"), weights)
