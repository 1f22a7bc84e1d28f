"""Validation findings and the report that gathers them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sm_imgclf.errors import DatasetValidationError


class Severity(StrEnum):
    """How much a finding matters.

    ``ERROR`` blocks an upload (the file would break or mislead training),
    ``WARNING`` deserves a look, ``INFO`` is handled automatically.
    """

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One thing validation noticed.

    Attributes:
        code: A stable identifier such as ``"corrupt_image"`` (see the docs for the list).
        severity: :class:`Severity` of the finding.
        message: What is wrong and what to do, for people.
        path: The file or folder at fault, relative to the dataset root, if any.
        split: The split concerned, if any.
        class_id: The class folder concerned, if any.
        skipped: True when the file is left out of the dataset.
    """

    code: str
    severity: Severity
    message: str
    path: str | None = None
    split: str | None = None
    class_id: str | None = None
    skipped: bool = False

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"[{self.severity.value}] {self.code}: {where}{self.message}"


@dataclass
class ValidationReport:
    """Everything :meth:`ImageFolderDataset.validate` found.

    Attributes:
        root: The dataset root.
        classes: Class ids in index order.
        counts: Usable images per split and class.
        findings: Every finding, errors first.
        image_sizes: Per split, min/median/max of width and height in pixels.
        files_checked: Number of files opened.
        seconds: Time spent validating.
        decoded: Files decoded whole; the rest had their headers read (see
            ``check`` in :meth:`ImageFolderDataset.validate`).
        check: What was checked: ``"full"``, ``"headers"`` or ``"sample"``.
    """

    root: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    findings: list[Finding] = field(default_factory=list)
    image_sizes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    files_checked: int = 0
    seconds: float = 0.0
    decoded: int = 0
    check: str = "full"

    def _by(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity is severity]

    @property
    def errors(self) -> list[Finding]:
        """Findings of severity ``ERROR``."""
        return self._by(Severity.ERROR)

    @property
    def warnings(self) -> list[Finding]:
        """Findings of severity ``WARNING``."""
        return self._by(Severity.WARNING)

    @property
    def ok(self) -> bool:
        """True when there are no errors."""
        return not self.errors

    @property
    def skipped(self) -> list[str]:
        """Paths left out of the dataset whatever happens (hidden files, stray files ...)."""
        return sorted({f.path for f in self.findings if f.skipped and f.path})

    def raise_for_errors(self) -> None:
        """Raise :class:`~sm_imgclf.DatasetValidationError` if any finding is an error."""
        if self.errors:
            shown = "\n".join(f"  {f}" for f in self.errors[:10])
            more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
            raise DatasetValidationError(
                f"Validation of {self.root} found {len(self.errors)} error(s):\n{shown}{more}\n"
                "Fix these files, or upload with skip_invalid=True to leave them out.",
                report=self,
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data."""
        data = asdict(self)
        data["summary"] = {s.value: len(self._by(s)) for s in Severity}
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """Return the report as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        lines = [
            f"Dataset {self.root}: {len(self.classes)} classes, "
            f"{self.files_checked} files checked in {self.seconds:.1f}s{self._how()}"
        ]
        for split, per_class in self.counts.items():
            values = list(per_class.values()) or [0]
            lines.append(
                f"  {split:<8} {sum(values):>7} images   per class "
                f"min {min(values)}, max {max(values)}"
            )
        tally = Counter(f.severity for f in self.findings)
        lines.append(
            f"  {tally[Severity.ERROR]} errors, {tally[Severity.WARNING]} warnings, "
            f"{tally[Severity.INFO]} notes"
        )
        lines.extend(_grouped(self.findings))
        return "\n".join(lines)

    def _how(self) -> str:
        if self.check == "full":
            return ""
        return (
            f" ({self.check}: {self.decoded} decoded whole, the rest by their headers only, "
            "so a truncated or corrupt file among them fails only when a job decodes it)"
        )


def _grouped(findings: list[Finding], shown: int = 5) -> list[str]:
    lines: list[str] = []
    by_code: dict[str, list[Finding]] = {}
    for finding in findings:
        by_code.setdefault(finding.code, []).append(finding)
    for code, group in by_code.items():
        lines.append(f"  {group[0].severity.value.upper():<7} {code} ({len(group)})")
        lines.extend(f"      {f.path + ': ' if f.path else ''}{f.message}" for f in group[:shown])
        if len(group) > shown:
            lines.append(f"      ... and {len(group) - shown} more (see to_json())")
    return lines
