"""JSON files the library keeps under the user's cache folder (prices, measured speeds).

Both are a cache: an unreadable file reads as empty and is rebuilt, and a file
that cannot be written only loses what it would have kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sm_imgclf._cache import cache_path

__all__ = ["cache_path", "read_json", "write_json"]


def read_json(path: Path) -> dict[str, Any]:
    """The file's object; empty when it is missing, damaged or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> bool:
    """Replace the file atomically (a temporary file, then a rename); ``False`` if it can't."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        return False
    return True
