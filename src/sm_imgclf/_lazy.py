"""Importing optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from sm_imgclf.errors import MissingDependencyError


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`~sm_imgclf.MissingDependencyError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{module.split('.')[0]} is needed for this and is not installed. "
            f'Install it with: pip install "sm-imgclf[{extra}]"',
            extra=extra,
        ) from error
