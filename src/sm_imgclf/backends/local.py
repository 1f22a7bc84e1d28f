"""The local backend: everything under one directory on this machine."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from sm_imgclf.storage.local import LocalDirStore


class LocalBackend:
    """Stores data under ``root/store`` with ``file://`` URIs.

    Args:
        root: The session directory.
        max_concurrency: Files copied at once.
    """

    name = "local"

    def __init__(self, root: Path, *, max_concurrency: int = 4) -> None:
        self.root = root
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    @cached_property
    def store(self) -> LocalDirStore:
        """The directory store under ``root/store``."""
        return LocalDirStore(self.root / "store", max_concurrency=self.max_concurrency)
