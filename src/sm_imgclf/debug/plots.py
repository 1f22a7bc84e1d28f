"""Charts of recorded data, drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sm_imgclf._pages import figure, finish
from sm_imgclf.runtime.checks.records import Records


def losses(records: Records, path: str | Path | None = None) -> Any:
    """Train loss per recorded step, and train and valid loss per epoch."""
    fig, ax = figure()
    steps = [(s["step"], s["loss"]) for s in records.steps]
    per_epoch = records.meta.get("steps_per_epoch") or 1
    if steps:
        ax.plot(*zip(*steps, strict=True), ".", alpha=0.4, label="train (recorded steps)")
    for key, style in (("train:loss", "-o"), ("valid:loss", "-s")):
        rows = [(e["epoch"] * per_epoch, e[key]) for e in records.epochs if key in e]
        if rows:
            ax.plot(*zip(*rows, strict=True), style, label=f"{key} (epoch end)")
    values = [v for line in ax.get_lines() for v in line.get_ydata() if v > 0]
    if values and max(values) > 50 * min(values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    return finish(fig, ax, "Loss: train versus valid", path)


def gradients(records: Records, path: str | Path | None = None) -> Any:
    """Gradient norm of every layer group over the recorded steps (log scale)."""
    fig, ax = figure()
    groups = list(dict.fromkeys(g for s in records.steps for g in s.get("grad_norm", {})))
    for group in groups:
        rows = [
            (s["step"], s["grad_norm"][group])
            for s in records.steps
            if group in s.get("grad_norm", {}) and s["grad_norm"][group] > 0
        ]
        if rows:
            ax.plot(*zip(*rows, strict=True), label=group)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient L2 norm")
    if len(groups) <= 16:
        ax.legend(fontsize="x-small", ncol=2)
    return finish(fig, ax, "Gradient norms per layer group", path)


def system(records: Records, path: str | Path | None = None) -> Any:
    """CPU, memory and (with a GPU) GPU utilisation over time."""
    fig, ax = figure()
    rows = records.system
    for key, label in (
        ("cpu", "CPU %"),
        ("memory", "memory %"),
        ("gpu_util", "GPU %"),
        ("gpu_memory", "GPU memory %"),
    ):
        points = [(r["t"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), label=label)
    ax.set_ylim(0, 105)
    ax.set_xlabel("seconds since the job started")
    ax.legend(fontsize="small")
    return finish(fig, ax, "System utilisation", path)


def step_times(records: Records, path: str | Path | None = None) -> Any:
    """Each recorded step's time split into data, forward, backward and optimizer.

    The recorder's own work, left out of the four phases, is stacked on top in
    grey (records from before it was measured apart have none).
    """
    fig, ax = figure()
    rows = records.splits
    bottom = [0.0] * len(rows)
    labels = [str(r["step"]) for r in rows]
    for key in ("data", "forward", "backward", "optimizer", "recorder"):
        values = [r.get(key, 0.0) * 1000 for r in rows]
        style = (
            {"color": "#bbbbbb", "label": "recorder (not training)"}
            if key == "recorder"
            else {"label": key}
        )
        ax.bar(labels, values, bottom=bottom, **style)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("recorded step")
    ax.set_ylabel("milliseconds")
    if len(labels) > 20:
        ax.set_xticks(labels[:: max(1, len(labels) // 20)])
    ax.legend(fontsize="small")
    return finish(fig, ax, "Step time breakdown", path)
