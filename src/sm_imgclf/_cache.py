"""Where the library keeps what it can rebuild: the user's cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_path(name: str) -> Path:
    """``$XDG_CACHE_HOME/sm-imgclf/<name>`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sm-imgclf" / name
