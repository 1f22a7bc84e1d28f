"""Text and matplotlib views of a tuning run's trials."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sm_imgclf.tuning.trial import Trial

_MARKERS = {"completed": "o", "pruned": "x", "failed": "s", "stopped": "v", "running": "."}


def format_table(rows: list[dict[str, Any]], best: str | None) -> str:
    """Align ``rows`` in columns; the row of job ``best`` gets a ``*``."""
    if not rows:
        return "(no trials yet)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for row, cell in zip(rows, cells, strict=True):
        mark = "* " if row["job_name"] == best else "  "
        lines.append(mark + "  ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_trials(
    trials: list[Trial], objective: str, path: str | Path | None, categorical: tuple[str, ...] = ()
) -> Any:
    """Objective per trial, then one panel per tuned parameter; pruned trials as crosses.

    Parameters named in ``categorical`` are drawn as categories, evenly spaced in
    the order of their values, whatever those values are.
    """
    from sm_imgclf._lazy import require

    require("matplotlib", extra="plots")
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    names = sorted({k for t in trials for k in t.hyperparameters})
    figure, axes = plt.subplots(
        1, 1 + len(names), figsize=(4 * (1 + len(names)), 3.4), squeeze=False
    )
    _panel(axes[0][0], trials, lambda i, t: i, "trial", objective)
    for ax, name in zip(axes[0][1:], names, strict=True):
        if name in categorical:
            _categories(ax, trials, name, objective)
            continue
        _panel(ax, trials, lambda i, t, n=name: t.hyperparameters.get(n), name, objective)
        if (
            all(isinstance(t.hyperparameters.get(name), float) for t in trials)
            and min(t.hyperparameters[name] for t in trials) > 0
        ):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
    axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def _categories(ax: Any, trials: list[Trial], name: str, objective: str) -> None:
    values = sorted({t.hyperparameters.get(name) for t in trials}, key=str)
    where = {value: i for i, value in enumerate(values)}
    _panel(ax, trials, lambda i, t: where[t.hyperparameters.get(name)], name, objective)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlim(-0.5, len(values) - 0.5)


def _panel(ax: Any, trials: list[Trial], x: Any, xlabel: str, objective: str) -> None:
    for status, marker in _MARKERS.items():
        points = [
            (x(i, t), t.objective)
            for i, t in enumerate(trials)
            if t.status == status and t.objective is not None
        ]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=status)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    if xlabel == "trial":
        ax.legend(fontsize="small")
