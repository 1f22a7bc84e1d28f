"""Charts of an evaluation, drawn with matplotlib: files for ``plots=``, figures for the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._pages import figure

if TYPE_CHECKING:
    from sm_imgclf.evaluation.scores import Scores


def write_plots(result: Scores, folder: Path) -> list[str]:
    """Save the confusion matrix and per-class accuracy as PNG files in ``folder``."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in (
        ("confusion_matrix.png", confusion(result)),
        ("per_class_accuracy.png", per_class(result)),
    ):
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(str(folder / name))
    return written


def confusion(result: Scores) -> Any:
    """The full confusion matrix as an image (readable up to a few dozen classes)."""
    size = max(4.0, 0.35 * len(result.class_ids))
    fig, axes = figure(size + 1, size)
    image = axes.imshow(result.confusion, cmap="Blues")
    axes.set(
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix",
        xticks=range(len(result.class_ids)),
        yticks=range(len(result.class_ids)),
    )
    axes.set_xticklabels(result.class_ids, rotation=90, fontsize=7)
    axes.set_yticklabels(result.class_ids, fontsize=7)
    fig.colorbar(image)
    fig.tight_layout()
    return fig


def per_class(result: Scores) -> Any:
    """Recall of every class as bars."""
    fig, axes = figure(max(6.0, 0.3 * len(result.class_ids)), 4)
    recalls = [result.per_class[c]["recall"] for c in result.class_ids]
    axes.bar(range(len(recalls)), recalls, color="#3b75af")
    axes.set(
        ylim=(0, 1),
        ylabel="accuracy (recall)",
        title="Per-class accuracy",
        xticks=range(len(recalls)),
    )
    axes.set_xticklabels(result.class_ids, rotation=90, fontsize=7)
    fig.tight_layout()
    return fig


def reliability_diagram(result: Scores) -> Any:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    bins = result.calibration
    fig, _ = figure(5.6, 5.0)
    fig.clear()
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0].high - bins[0].low
    filled = [b for b in bins if b.count]
    top.bar(
        [b.low for b in filled],
        [b.accuracy for b in filled],
        width=width,
        align="edge",
        color="#3b75af",
        edgecolor="white",
        label="accuracy",
    )
    top.bar(
        [b.low for b in filled],
        [b.confidence - b.accuracy for b in filled],
        width=width,
        bottom=[b.accuracy for b in filled],
        align="edge",
        color="#e8736c",
        alpha=0.55,
        edgecolor="white",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="#5b6475", linewidth=1, label="perfect calibration")
    top.set(
        ylim=(0, 1),
        ylabel="accuracy",
        title=f"Reliability (ECE {result.expected_calibration_error:.3f})",
    )
    top.legend(fontsize="small", loc="upper left")
    bottom.bar(
        [b.low for b in bins],
        [b.count for b in bins],
        width=width,
        align="edge",
        color="#8fa3bf",
        edgecolor="white",
    )
    bottom.set(xlim=(0, 1), xlabel="confidence (best-class probability)", ylabel="images")
    fig.tight_layout()
    return fig


def latency_histogram(result: Scores) -> Any:
    """Request latencies, with the p50, p95 and p99 marked."""
    fig, axes = figure(6.4, 3.0)
    values = [s.latency_ms for s in result.scored]
    axes.hist(values, bins=min(40, max(5, len(values) // 4)), color="#3b75af", edgecolor="white")
    for (name, value), colour in zip(
        result.latency_ms.items(), ("#175c2c", "#b7791f", "#8a1c12"), strict=False
    ):
        axes.axvline(
            value, color=colour, linestyle="--", linewidth=1.2, label=f"{name} {value:.1f} ms"
        )
    axes.set(xlabel="milliseconds per request", ylabel="requests", title="Latency")
    axes.legend(fontsize="small")
    fig.tight_layout()
    return fig
