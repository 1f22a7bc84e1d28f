"""When to show progress bars."""

from __future__ import annotations

import os


def bar_disabled(progress: bool | None) -> bool | None:
    """Translate a ``progress`` argument into tqdm's ``disable``.

    ``None`` means automatic: shown on a terminal, hidden elsewhere and in CI.
    """
    if progress is None:
        return True if os.environ.get("CI") else None
    return not progress
