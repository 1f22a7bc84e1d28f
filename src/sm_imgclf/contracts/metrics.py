"""The metric lines a training job prints, and how they are read back.

One line per epoch, e.g. ``epoch=3 train:loss=0.4100 train:accuracy=0.8800
valid:...``; then ``best_epoch=N valid.accuracy=...``, the metrics of the epoch
whose weights the package holds, under dotted names, and a ``test`` line.
SageMaker extracts metrics from the log with :data:`METRIC_DEFINITIONS`, which
the dotted names do not match: its tuner sees exactly one report per epoch.
Readers here take the best epoch's metrics from that line all the same.
"""

from __future__ import annotations

import re
from typing import Any

METRIC_NAMES = (
    "train:loss",
    "train:accuracy",
    "valid:loss",
    "valid:accuracy",
    "test:loss",
    "test:accuracy",
)
# A number as Python prints it, including nan, inf and -inf (a diverged loss).
_NUMBER = r"([-+]?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+|nan|inf))"
METRIC_DEFINITIONS = tuple(
    {"Name": name, "Regex": rf"{re.escape(name)}={_NUMBER}"} for name in METRIC_NAMES
)
_EPOCH = re.compile(r"^epoch=(\d+) ")
# The epoch count as a metric of its own, for services that read metrics from the log:
# its final value is the number of epochs the job trained (not "best_epoch=").
EPOCH_DEFINITION = {"Name": "epoch", "Regex": r"\bepoch=(\d+) "}
BEST_PREFIX = "best_epoch="
_DOTTED = re.compile(rf"\b(train|valid)\.(loss|accuracy)={_NUMBER}")
# The packaged epoch's metrics as metrics of their own (``best:valid:accuracy``): only the
# best-epoch line has dotted names, so their final values are that epoch's, and a tuner
# that ranks trials by each metric's last report can rank them by the best epoch instead.
BEST_DEFINITIONS = tuple(
    {"Name": f"best:{name}", "Regex": rf"\b{re.escape(name.replace(':', '.'))}={_NUMBER}"}
    for name in METRIC_NAMES
    if not name.startswith("test:")
)
# Set in a tuning job's trials when one more report of the objective misleads nothing:
# the job then prints the best epoch's metrics last, under the names the tuner reads.
REPORT_BEST_ENV = "SM_IMGCLF_REPORT_BEST"


def best_line(epoch: int, metrics: dict[str, float]) -> str:
    """The line naming the packaged epoch and its metrics, under dotted names."""
    shown = " ".join(f"{k.replace(':', '.')}={v:.4f}" for k, v in metrics.items() if ":" in k)
    return f"{BEST_PREFIX}{epoch} {shown}"


def best_report(metrics: dict[str, float]) -> str:
    """The best epoch's metrics under their own names, for a tuner that reads the last one."""
    splits = ("train:", "valid:")
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(splits))
    return f"reported again for the tuner, from the packaged epoch: {shown}"


def parse_metrics(lines: list[str]) -> list[dict[str, Any]]:
    """Return one dictionary per epoch line, and others for the best-epoch and test lines."""
    rows: list[dict[str, Any]] = []
    for line in lines:
        if line.startswith(BEST_PREFIX):
            found = {
                f"{split}:{name}": float(value) for split, name, value in _DOTTED.findall(line)
            }
        else:
            found = {
                d["Name"]: float(m.group(1))
                for d in METRIC_DEFINITIONS
                if (m := re.search(d["Regex"], line))
            }
        if not found:
            continue
        epoch = _EPOCH.match(line)
        rows.append({"epoch": int(epoch.group(1)) if epoch else None, **found})
    return rows


def metric_rows(lines: list[str]) -> list[dict[str, Any]]:
    """Per-epoch rows, the last report of each epoch winning, then one merged final row.

    A resumed job repeats no epoch; the final row (``epoch`` ``None``) holds the
    best epoch's metrics (those of the packaged model) and the test metrics.
    """
    return merge_rows(parse_metrics(lines))


def merge_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge rows from :func:`parse_metrics` as :func:`metric_rows` describes."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = row["epoch"] if row["epoch"] is not None else "final"
        by_epoch[key] = by_epoch.get(key, {}) | row if key == "final" else row
    return list(by_epoch.values())
