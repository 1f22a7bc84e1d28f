"""Content tags computed locally, to compare files with stored objects without downloading."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def file_md5(path: Path) -> str:
    """Return the hex MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def multipart_etag(path: Path, part_size: int) -> str:
    """Return the ETag S3 gives a file uploaded in parts of ``part_size`` bytes.

    S3 tags a multipart object with the MD5 of the concatenated binary MD5s of
    its parts, followed by ``-<number of parts>``.
    """
    part_digests = []
    with path.open("rb") as handle:
        while part := handle.read(part_size):
            part_digests.append(hashlib.md5(part, usedforsecurity=False).digest())
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(part_digests)}"
