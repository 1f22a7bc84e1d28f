"""A store in a local directory, addressed with ``file://`` URIs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from sm_imgclf._params import bad_value
from sm_imgclf.contracts.storage import ObjectInfo, ProgressCallback, UploadItem
from sm_imgclf.errors import ObjectNotFoundError, StorageAccessDeniedError, StorageError
from sm_imgclf.storage.checksums import file_md5

_CHUNK = 1 << 20


class LocalDirStore:
    """Keeps objects as files under ``root``; a key is a relative ``/``-separated path.

    Writes go to a temporary file that is renamed into place, so an
    interrupted copy never leaves a truncated object behind.

    Args:
        root: The directory that holds the objects; created on first write.
        max_concurrency: Files copied at once by :func:`~sm_imgclf.storage.upload_files`.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_concurrency: int = 4) -> None:
        self.root = Path(root).expanduser().absolute()
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"LocalDirStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Return the file that holds ``key``; refuses keys that would leave the root."""
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or ".." in parts or "\\" in key:
            raise bad_value("key", "a relative path inside the store", key)
        return self.root.joinpath(*parts)

    def uri(self, key: str) -> str:
        """Return the ``file://`` URI of ``key``."""
        return self.path(key).as_uri() if key else self.root.as_uri()

    def check_access(self) -> None:
        """Create the root if needed and check that it is writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"Cannot create the store directory {self.root}: {error}. "
                "Choose another root with LocalSession(root=...)."
            ) from error
        if not os.access(self.root, os.W_OK):
            raise StorageAccessDeniedError(
                f"The store directory {self.root} is not writable. "
                "Fix its permissions or choose another root with LocalSession(root=...)."
            )

    def list_objects(self, prefix: str) -> dict[str, ObjectInfo]:
        """Return every stored file whose key starts with ``prefix``, with its MD5."""
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        start = base if base.is_dir() else base.parent
        found: dict[str, ObjectInfo] = {}
        if not start.is_dir():
            return found
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith(".sm-imgclf-tmp"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = ObjectInfo(size=path.stat().st_size, etag=file_md5(path))
        return found

    def expected_etag(self, item: UploadItem) -> str:
        """Return the file's MD5, the tag this store compares."""
        return item.md5 or file_md5(item.path)

    def put_file(self, item: UploadItem, progress: ProgressCallback) -> None:
        """Copy one file into the store, reporting progress per MiB."""
        target = self.path(item.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with item.path.open("rb") as source, AtomicWriter(target) as sink:
            while chunk := source.read(_CHUNK):
                sink.write(chunk)
                progress(len(chunk))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``, replacing what was there."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with AtomicWriter(target) as sink:
            sink.write(data)

    def get_bytes(self, key: str) -> bytes:
        """Read the object under ``key``."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"No object {key!r} in {self!r}.") from None

    def get_file(self, key: str, target: Path) -> Path:
        """Copy the object under ``key`` to ``target``."""
        source = self.path(key)
        if not source.is_file():
            raise ObjectNotFoundError(f"No object {key!r} in {self!r}.")
        with source.open("rb") as body, AtomicWriter(target) as sink:
            shutil.copyfileobj(body, sink)
        return target


class AtomicWriter:
    """A binary file that appears at ``target`` only when closed without an error."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> tempfile._TemporaryFileWrapper[bytes]:
        self.handle = tempfile.NamedTemporaryFile(
            dir=self.target.parent, prefix=".sm-imgclf-tmp", delete=False
        )
        return self.handle

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.handle.close()
        if error is None:
            os.replace(self.handle.name, self.target)
        else:
            Path(self.handle.name).unlink(missing_ok=True)
