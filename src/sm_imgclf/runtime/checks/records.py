"""The recorded data of a job, as written under ``<output>/debug`` and read back.

Files (JSON lines, one object a line, appended as the job runs):

``records.jsonl``
    ``{"type": "meta", ...}`` first (model, class names, train counts, settings);
    ``{"type": "step", "step", "epoch", "loss", "grad_norm": {group: L2 norm},
    "grad_mean": {group: mean |g|}, "weight": {group: {"mean", "std", "absmax"}},
    "relu_zero": {module: fraction of zero outputs}, "nonfinite": [group ...]}``
    every ``record_every`` steps (with ``"amp_skipped": true`` when mixed precision's
    GradScaler found non-finite gradients and skipped the update, which is normal
    while its scale calibrates: the rules leave those steps out);
    ``{"type": "epoch", "epoch", "train:loss" ...,
    "confusion": [[count of true i predicted j]]}`` each epoch; ``{"type": "rule", ...}``
    when a rule first triggers in the job.
``system.jsonl``
    ``{"t", "cpu", "memory", "rss_mb", "read_mb", "write_mb", "sent_mb", "recv_mb",
    "gpu_util", "gpu_memory", "gpu_source"}`` every ``interval`` seconds (GPU fields
    with a GPU; ``gpu_source`` is ``nvml``, ``nvidia-smi`` or ``torch.cuda``, which
    has no ``gpu_util``).
``steps.jsonl``
    ``{"type": "split", "step", "data", "forward", "backward", "optimizer", "recorder"}``
    (seconds) for recorded steps, the recorder's own work counted apart from the four
    phases, and ``{"type": "durations", "epoch", "seconds": [...]}`` per epoch (without
    the recorder's work).
``operators.json``
    The top operators of a short ``torch.profiler`` window.

A job killed mid-write leaves a partial last line; readers stop before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORDS, SYSTEM, STEPS, OPERATORS = "records.jsonl", "system.jsonl", "steps.jsonl", "operators.json"


@dataclass
class Records:
    """Everything one job recorded, grouped by kind."""

    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    system: list[dict[str, Any]] = field(default_factory=list)
    splits: list[dict[str, Any]] = field(default_factory=list)
    durations: list[dict[str, Any]] = field(default_factory=list)
    operators: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        """File one record under its kind."""
        kind = row.get("type")
        if kind == "meta":
            self.meta = row
        elif kind == "rule":
            self.rules.append(row)
        elif kind == "step" and row.get("amp_skipped"):
            self.skipped.append(row)  # inf gradients the scaler threw away: not a fault
        elif kind in ("step", "epoch", "split", "durations"):
            {
                "step": self.steps,
                "epoch": self.epochs,
                "split": self.splits,
                "durations": self.durations,
            }[kind].append(row)
        else:
            self.system.append(row)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file up to its last complete line."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a partial line from a killed job; everything before it is sound
    return rows


def read_records(folder: Path) -> Records:
    """Read every file of a ``debug`` folder."""
    records = Records()
    for row in read_lines(folder / RECORDS) + read_lines(folder / STEPS):
        records.add(row)
    records.system = [r for r in read_lines(folder / SYSTEM) if "t" in r]
    try:
        records.operators = json.loads((folder / OPERATORS).read_text())
    except (OSError, ValueError):
        records.operators = []
    return records
