"""The Store protocol and the small value types that cross it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one stored object without reading it.

    Attributes:
        size: Size in bytes.
        etag: The store's content tag: the hex MD5 for whole-object uploads, S3's
            ``<md5-of-part-md5s>-<parts>`` form for multipart uploads.
    """

    size: int
    etag: str


@dataclass(frozen=True)
class UploadItem:
    """One local file to place under ``key`` in a store.

    Attributes:
        path: The local file.
        key: The destination key, ``/``-separated, relative to the store's root.
        size: Size in bytes, as read before the transfer.
        md5: Hex MD5 of the whole file, when already known (saves a second read).
    """

    path: Path
    key: str
    size: int
    md5: str | None = None


@dataclass
class TransferSummary:
    """What a sync did: every file lands in exactly one of the three lists.

    Attributes:
        uploaded: Keys transferred in this run.
        skipped: Keys already stored with identical content, left alone.
        failed: Key to error message, for files that could not be transferred.
        bytes_uploaded: Bytes sent in this run.
        seconds: Wall-clock duration of the sync.
    """

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_uploaded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def add(self, other: TransferSummary) -> None:
        """Count ``other``'s transfers into this summary (several syncs as one)."""
        self.uploaded += other.uploaded
        self.skipped = sorted(self.skipped + other.skipped)
        self.failed |= other.failed
        self.bytes_uploaded += other.bytes_uploaded
        self.seconds += other.seconds

    def __str__(self) -> str:
        text = (
            f"{len(self.uploaded)} uploaded ({self.bytes_uploaded:,} bytes), "
            f"{len(self.skipped)} skipped (unchanged), {len(self.failed)} failed "
            f"in {self.seconds:.1f}s"
        )
        for key, error in sorted(self.failed.items())[:20]:
            text += f"\n  failed: {key}: {error}"
        if len(self.failed) > 20:
            text += f"\n  ... and {len(self.failed) - 20} more"
        return text


ProgressCallback = Callable[[int], None]


@runtime_checkable
class Store(Protocol):
    """Where a backend keeps data: keys map to immutable byte objects.

    Implementations: :class:`~sm_imgclf.storage.local.LocalDirStore`,
    :class:`~sm_imgclf.storage.s3.S3Store` and
    :class:`~sm_imgclf.storage.memory.MemoryStore`.
    """

    max_concurrency: int

    def uri(self, key: str) -> str:
        """Return the URI a job or a user would use for ``key`` (``file://``, ``s3://``)."""
        ...

    def check_access(self) -> None:
        """Raise a :class:`~sm_imgclf.StorageError` subclass if the store is unusable."""
        ...

    def list_objects(self, prefix: str) -> dict[str, ObjectInfo]:
        """Return every object whose key starts with ``prefix``."""
        ...

    def expected_etag(self, item: UploadItem) -> str:
        """Return the tag this store would give ``item`` once uploaded."""
        ...

    def put_file(self, item: UploadItem, progress: ProgressCallback) -> None:
        """Store one file, calling ``progress(bytes)`` as bytes are sent."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the object under ``key`` or raise :class:`~sm_imgclf.ObjectNotFoundError`."""
        ...

    def get_file(self, key: str, target: Path) -> Path:
        """Stream the object under ``key`` into the file ``target`` and return it.

        The object is never held in memory whole; ``target`` appears only once
        the copy is complete.

        Raises:
            ObjectNotFoundError: Nothing is stored under ``key``.
        """
        ...
