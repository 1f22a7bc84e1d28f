"""Evaluating an endpoint on a labelled folder: accuracy, per class, confusion, latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sm_imgclf._lazy import require
from sm_imgclf.errors import DatasetError
from sm_imgclf.serving.prediction import Prediction


@dataclass
class Evaluation:
    """How an endpoint did on a labelled folder.

    Attributes:
        images: Images scored.
        accuracy: Share whose best class is right.
        top_k_accuracy: Share whose right class is among the top k.
        per_class: Per class id: precision, recall, f1 and support.
        class_ids: Class ids in the order of the confusion matrix.
        confusion: ``confusion[true][predicted]`` counts.
        latency_ms: p50, p95 and p99 of one-image requests, in milliseconds.
        misclassified: ``(file, true class id, predicted class id, score)`` for each miss.
        plots: Paths of the plots written, if any.
    """

    images: int
    accuracy: float
    top_k_accuracy: float
    per_class: dict[str, dict[str, float]]
    class_ids: list[str]
    confusion: list[list[int]]
    latency_ms: dict[str, float]
    misclassified: list[tuple[str, str, str, float]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as JSON-ready data."""
        return asdict(self)

    def __str__(self) -> str:
        latency = ", ".join(f"{k} {v:.1f} ms" for k, v in self.latency_ms.items())
        return (f"{self.images} images: accuracy {self.accuracy:.4f}, top-k accuracy "
                f"{self.top_k_accuracy:.4f}; latency {latency}; "
                f"{len(self.misclassified)} misclassified")


def evaluate(predict: Callable[[Path], Prediction], folder: Path, *,
             plots: str | Path | None = None, workers: int = 4) -> Evaluation:
    """Send every image of ``folder`` (``<class>/<file>``) to ``predict`` and score the answers.

    Each image is its own request, ``workers`` at a time, so latency is measured per image.
    """
    from sm_imgclf.runtime.job.data import list_channel

    files, class_ids, _ = list_channel(folder)
    if not files:
        raise DatasetError(f"No images to evaluate in {folder}.")

    def one(path: Path) -> tuple[Prediction, float]:
        started = time.perf_counter()
        prediction = predict(path)
        return prediction, (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(one, [path for path, _ in files]))
    truths = [class_ids[label] for _, label in files]
    result = _score(files, truths, answers)
    if plots is not None:
        result.plots = _plot(result, Path(plots))
    return result


def _score(files: list[tuple[Path, int]], truths: list[str],
           answers: list[tuple[Prediction, float]]) -> Evaluation:
    predicted = [p.class_id for p, _ in answers]
    classes = sorted(set(truths) | set(predicted))
    index = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for truth, guess in zip(truths, predicted, strict=True):
        confusion[index[truth]][index[guess]] += 1
    top_hits = sum(t in p.top_k_class_ids for t, (p, _) in zip(truths, answers, strict=True))
    latencies = sorted(ms for _, ms in answers)
    return Evaluation(
        images=len(files), accuracy=sum(t == g for t, g in zip(truths, predicted, strict=True))
        / len(files), top_k_accuracy=top_hits / len(files),
        per_class=_per_class(classes, confusion), class_ids=classes, confusion=confusion,
        latency_ms={f"p{q}": _percentile(latencies, q) for q in (50, 95, 99)},
        misclassified=[(str(path), t, p.class_id, p.score)
                       for (path, _), t, (p, _) in zip(files, truths, answers, strict=True)
                       if t != p.class_id])


def _per_class(classes: list[str], confusion: list[list[int]]) -> dict[str, dict[str, float]]:
    scores = {}
    for i, class_id in enumerate(classes):
        hits = confusion[i][i]
        support = sum(confusion[i])
        claimed = sum(row[i] for row in confusion)
        precision = hits / claimed if claimed else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[class_id] = {"precision": precision, "recall": recall, "f1": f1,
                            "support": float(support)}
    return scores


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _plot(result: Evaluation, folder: Path) -> list[str]:
    require("matplotlib", extra="plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    size = max(4.0, 0.35 * len(result.class_ids))
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(result.confusion, cmap="Blues")
    axes.set(xlabel="predicted", ylabel="true", title="Confusion matrix",
             xticks=range(len(result.class_ids)), yticks=range(len(result.class_ids)))
    axes.set_xticklabels(result.class_ids, rotation=90, fontsize=7)
    axes.set_yticklabels(result.class_ids, fontsize=7)
    figure.colorbar(image)
    figure.tight_layout()
    confusion = folder / "confusion_matrix.png"
    figure.savefig(confusion, dpi=110)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.3 * len(result.class_ids)), 4))
    recalls = [result.per_class[c]["recall"] for c in result.class_ids]
    axes.bar(range(len(recalls)), recalls, color="#3b75af")
    axes.set(ylim=(0, 1), ylabel="accuracy (recall)", title="Per-class accuracy",
             xticks=range(len(recalls)))
    axes.set_xticklabels(result.class_ids, rotation=90, fontsize=7)
    figure.tight_layout()
    per_class = folder / "per_class_accuracy.png"
    figure.savefig(per_class, dpi=110)
    plt.close(figure)
    return [str(confusion), str(per_class)]
