"""A backend that keeps everything in memory, for tests of code built on sm-imgclf."""

from __future__ import annotations

from sm_imgclf.storage.memory import MemoryStore


class FakeBackend:
    """Stores objects in a :class:`~sm_imgclf.storage.memory.MemoryStore`.

    Use it with ``sm_imgclf.Session(FakeBackend())`` to exercise a workflow
    without touching the disk or the network, then assert on
    ``backend.store.objects``.

    Args:
        name: The name of the in-memory store, shown in its ``memory://`` URIs.
    """

    name = "fake"

    def __init__(self, name: str = "fake") -> None:
        self._store = MemoryStore(name)

    @property
    def store(self) -> MemoryStore:
        """The in-memory store."""
        return self._store
