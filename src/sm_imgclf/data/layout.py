"""Reading a dataset's folder layout: splits, class folders and the files in them.

Scanning never opens an image; it only decides which files belong to which
split and class, and records every entry it will not use as a finding.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sm_imgclf.data.report import Finding, Severity
from sm_imgclf.errors import DatasetNotFoundError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "icon\r"})
UNSPLIT = "train"


@dataclass(frozen=True)
class ImageFile:
    """One file in a class folder.

    Attributes:
        path: Absolute path on disk.
        rel: Path relative to the dataset root, ``/``-separated.
        split: The split it belongs to.
        class_id: Its class folder name.
        name: Its path inside the class folder, ``/``-separated.
    """

    path: Path
    rel: str
    split: str
    class_id: str
    name: str


@dataclass
class Layout:
    """What a scan found: class ids in index order, files, and unused entries."""

    classes: list[str]
    splits: list[str]
    files: list[ImageFile]
    findings: list[Finding] = field(default_factory=list)
    class_folders: dict[str, set[str]] = field(default_factory=dict)


def display_name(class_id: str) -> str:
    """Return a class's display name: numeric prefix dropped, underscores as spaces.

    >>> display_name("001.Affenpinscher")
    'Affenpinscher'
    >>> display_name("042_Cocker_spaniel")
    'Cocker spaniel'
    """
    stripped = re.sub(r"^\d+[._\- ]+", "", class_id) or class_id
    return stripped.replace("_", " ").strip() or class_id


def scan(root: Path, split_names: Sequence[str]) -> Layout:
    """Scan ``root``: split folders holding class folders, or class folders alone."""
    if not root.exists():
        raise DatasetNotFoundError(
            f"The dataset root {root} does not exist. Check the path, or download and "
            "extract the dataset there first."
        )
    if not root.is_dir():
        raise DatasetNotFoundError(f"The dataset root {root} is a file, not a folder of images.")
    scanner = _Scanner(root)
    present = [name for name in split_names if (root / name).is_dir()]
    if present:
        for entry in _entries(root, scanner.findings, root):
            if entry.is_dir(follow_symlinks=False) and entry.name not in present:
                scanner.note(
                    entry,
                    "unknown_folder",
                    Severity.WARNING,
                    f"not one of the split folders {list(split_names)}; ignored. "
                    "Pass splits=(...) to use it.",
                )
            elif not entry.is_dir(follow_symlinks=False):
                scanner.stray(entry)
        for split in present:
            scanner.scan_split(root / split, split)
    else:
        scanner.scan_split(root, UNSPLIT)
    return scanner.layout(root, present or [UNSPLIT])


class _Scanner:
    def __init__(self, root: Path) -> None:
        self.display_root = root
        self.real_root = root.resolve()
        self.files: list[ImageFile] = []
        self.findings: list[Finding] = []
        self.class_folders: dict[str, set[str]] = {}

    def rel(self, path: str | Path) -> str:
        return Path(path).relative_to(self.display_root).as_posix()

    def note(
        self,
        entry: os.DirEntry[str],
        code: str,
        severity: Severity,
        message: str,
        split: str | None = None,
        class_id: str | None = None,
    ) -> None:
        self.findings.append(
            Finding(code, severity, message, self.rel(entry.path), split, class_id, skipped=True)
        )

    def stray(self, entry: os.DirEntry[str], split: str | None = None) -> None:
        if _is_hidden(entry.name):
            self.note(entry, "hidden_file", Severity.INFO, "hidden or system file; ignored.", split)
        else:
            self.note(
                entry,
                "stray_file",
                Severity.WARNING,
                "not inside a class folder; ignored. Move it into its class folder.",
                split,
            )

    def scan_split(self, folder: Path, split: str) -> None:
        for entry in _entries(folder, self.findings, self.display_root):
            if _is_hidden(entry.name):
                self.note(
                    entry, "hidden_file", Severity.INFO, "hidden or system entry; ignored.", split
                )
            elif entry.is_dir(follow_symlinks=False):
                self.class_folders.setdefault(entry.name, set()).add(split)
                self.scan_class(Path(entry.path), split, entry.name, "")
            elif entry.is_symlink() and os.path.isdir(entry.path):
                self.note(
                    entry,
                    "directory_symlink",
                    Severity.WARNING,
                    "linked folder not followed; copy it in place to use it.",
                    split,
                )
            else:
                self.stray(entry, None if folder == self.display_root else split)

    def scan_class(self, folder: Path, split: str, class_id: str, inner: str) -> None:
        for entry in _entries(folder, self.findings, self.display_root):
            name = f"{inner}{entry.name}"
            if _is_hidden(entry.name):
                self.note(
                    entry,
                    "hidden_file",
                    Severity.INFO,
                    "hidden or system entry; ignored.",
                    split,
                    class_id,
                )
            elif entry.is_dir(follow_symlinks=False):
                self.scan_class(Path(entry.path), split, class_id, f"{name}/")
            elif entry.is_symlink() and not self.link_inside(entry):
                self.note(
                    entry,
                    "symlink_outside_root",
                    Severity.ERROR,
                    "a link to a file outside the dataset root; refused. Copy the file in.",
                    split,
                    class_id,
                )
            elif entry.is_symlink() and os.path.isdir(entry.path):
                self.note(
                    entry,
                    "directory_symlink",
                    Severity.WARNING,
                    "linked folder not followed; copy it in place to use it.",
                    split,
                    class_id,
                )
            else:
                self.files.append(
                    ImageFile(Path(entry.path), self.rel(entry.path), split, class_id, name)
                )

    def link_inside(self, entry: os.DirEntry[str]) -> bool:
        target = Path(os.path.realpath(entry.path))
        return target == self.real_root or self.real_root in target.parents

    def layout(self, root: Path, splits: list[str]) -> Layout:
        if not self.class_folders:
            raise DatasetNotFoundError(
                f"No class folders found in {root}. Expected {root}/<split>/<class>/<image> "
                f"(splits such as train/valid/test) or {root}/<class>/<image>."
            )
        return Layout(
            sorted(self.class_folders), splits, self.files, self.findings, self.class_folders
        )


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SYSTEM_FILES


def _entries(folder: Path, findings: list[Finding], root: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as error:
        findings.append(
            Finding(
                "unreadable_folder",
                Severity.ERROR,
                f"cannot list this folder ({error.strerror}); check permissions.",
                Path(folder).relative_to(root).as_posix(),
            )
        )
        return []
