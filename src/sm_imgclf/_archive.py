"""Extracting archives safely: nothing may land outside the target folder."""

from __future__ import annotations

import tarfile
from pathlib import Path

from sm_imgclf.errors import SmImgclfError


class UnsafeArchiveError(SmImgclfError):
    """An archive member would escape the target folder or is not a plain file or folder."""


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a tar archive into ``target``, refusing traversal, links out, and devices.

    Every member is checked before anything is written, so a hostile archive
    writes nothing at all.
    """
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check(member, target)
        tar.extractall(target, members=members, filter="data")
    return target


def _check(member: tarfile.TarInfo, target: Path) -> None:
    destination = (target / member.name).resolve()
    if target != destination and target not in destination.parents:
        raise UnsafeArchiveError(
            f"Refusing archive member {member.name!r}: it would be written outside {target}."
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"Refusing archive member {member.name!r}: only plain files "
            "and folders are allowed in a model package."
        )
