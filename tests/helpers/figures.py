"""The reliability suite's sizes and the figures its tests report."""

from __future__ import annotations

import os
from typing import Any

FULL = os.environ.get("SM_IMGCLF_RELIABILITY") == "full"
FIGURES: dict[str, dict[str, Any]] = {}  # printed as one table and written to a file at the end


def scale(full: int, reduced: int) -> int:
    """The full size on demand, the reduced one otherwise."""
    return full if FULL else reduced
