"""An in-memory store, for tests and dry runs."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from sm_imgclf.contracts.storage import ObjectInfo, ProgressCallback, UploadItem
from sm_imgclf.errors import ObjectNotFoundError
from sm_imgclf.storage.checksums import file_md5


class MemoryStore:
    """Keeps objects in a dictionary; URIs use the ``memory://`` scheme.

    Args:
        name: Appears in URIs, so that two stores can be told apart.
        max_concurrency: Files stored at once by :func:`~sm_imgclf.storage.upload_files`.
    """

    def __init__(self, name: str = "fake", *, max_concurrency: int = 4) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self._lock = threading.Lock()

    def uri(self, key: str) -> str:
        """Return ``memory://<name>/<key>``."""
        return f"memory://{self.name}/{key}"

    def check_access(self) -> None:
        """Always usable."""

    def list_objects(self, prefix: str) -> dict[str, ObjectInfo]:
        """Return every object whose key starts with ``prefix``."""
        with self._lock:
            return {
                key: ObjectInfo(len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())
                for key, data in self.objects.items()
                if key.startswith(prefix)
            }

    def expected_etag(self, item: UploadItem) -> str:
        """Return the file's MD5."""
        return item.md5 or file_md5(item.path)

    def put_file(self, item: UploadItem, progress: ProgressCallback) -> None:
        """Read the file into memory."""
        data = item.path.read_bytes()
        self.put_bytes(item.key, data)
        progress(len(data))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` and record the write in :attr:`puts`."""
        with self._lock:
            self.objects[key] = bytes(data)
            self.puts.append(key)

    def get_bytes(self, key: str) -> bytes:
        """Return the object under ``key``."""
        with self._lock:
            if key not in self.objects:
                raise ObjectNotFoundError(f"No object {key!r} in memory store {self.name!r}.")
            return self.objects[key]

    def get_file(self, key: str, target: Path) -> Path:
        """Write the object under ``key`` to ``target``."""
        target.write_bytes(self.get_bytes(key))
        return target
