"""Evaluating an endpoint on a labelled folder: accuracy, per class, confusion, latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sm_imgclf.contracts.prediction import Prediction
from sm_imgclf.errors import DatasetError
from sm_imgclf.evaluation.scores import ScoredImage, Scores


@dataclass
class Evaluation(Scores):
    """How an endpoint did on a labelled folder: :class:`Scores`, a summary and a report."""

    def report(
        self,
        path: str | Path,
        *,
        explain: Any = None,
        gallery: int = 24,
        top_pairs: int = 20,
        title: str | None = None,
    ) -> Path:
        """Write one self-contained HTML page about this evaluation and return its path.

        Args:
            path: The HTML file to write.
            explain: The model behind the endpoint, for heatmaps on the gallery: a
                :class:`~sm_imgclf.TrainingJob`, a ``model.tar.gz`` or its folder, or a
                :class:`~sm_imgclf.ModelExplainer`. ``None`` leaves heatmaps out.
            gallery: Misclassified images shown, the most confident mistakes first.
            top_pairs: Most confused class pairs listed.
            title: The page's title (by default, the evaluated folder).
        """
        from sm_imgclf.evaluation.report import write_report

        return write_report(
            self, Path(path), explain=explain, gallery=gallery, top_pairs=top_pairs, title=title
        )

    def __str__(self) -> str:
        latency = ", ".join(f"{k} {v:.1f} ms" for k, v in self.latency_ms.items())
        return (
            f"{self.images} images: accuracy {self.accuracy:.4f}, top-k accuracy "
            f"{self.top_k_accuracy:.4f}; latency {latency}; "
            f"{len(self.misclassified)} misclassified"
        )


def evaluate(
    predict: Callable[[Path], Prediction],
    folder: Path,
    *,
    plots: str | Path | None = None,
    workers: int = 4,
) -> Evaluation:
    """Send every image of ``folder`` (``<class>/<file>``) to ``predict`` and score the answers.

    Each image is its own request, ``workers`` at a time, so latency is measured per image.
    """
    from sm_imgclf.runtime.job.data import list_channel

    listing = list_channel(folder, sizes=False)
    files, class_ids = listing.files, listing.class_ids
    if not files:
        raise DatasetError(f"No images to evaluate in {folder}.")

    def one(path: Path) -> tuple[Prediction, float]:
        started = time.perf_counter()
        prediction = predict(path)
        return prediction, (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(one, [path for path, _ in files]))
    scored = [
        ScoredImage(
            str(path),
            class_ids[label],
            p.class_id,
            p.score,
            tuple(
                (c, name, score)
                for c, (name, score) in zip(p.top_k_class_ids, p.top_k, strict=True)
            ),
            ms,
        )
        for (path, label), (p, ms) in zip(files, answers, strict=True)
    ]
    result = _score(scored)
    result.source = str(folder)
    if plots is not None:
        from sm_imgclf.evaluation.plots import write_plots

        result.plots = write_plots(result, Path(plots))
    return result


def _score(scored: list[ScoredImage]) -> Evaluation:
    classes = sorted({s.true for s in scored} | {s.predicted for s in scored})
    index = {c: i for i, c in enumerate(classes)}
    confusion = [[0] * len(classes) for _ in classes]
    for item in scored:
        confusion[index[item.true]][index[item.predicted]] += 1
    latencies = sorted(s.latency_ms for s in scored)
    labels = {class_id: label for s in scored for class_id, label, _ in s.top_k}
    return Evaluation(
        images=len(scored),
        accuracy=sum(s.correct for s in scored) / len(scored),
        top_k_accuracy=sum(s.true in {c for c, _, _ in s.top_k} for s in scored) / len(scored),
        per_class=_per_class(classes, confusion),
        class_ids=classes,
        confusion=confusion,
        latency_ms={f"p{q}": _percentile(latencies, q) for q in (50, 95, 99)},
        misclassified=[(s.path, s.true, s.predicted, s.score) for s in scored if not s.correct],
        scored=scored,
        labels=labels,
    )


def _per_class(classes: list[str], confusion: list[list[int]]) -> dict[str, dict[str, float]]:
    scores = {}
    for i, class_id in enumerate(classes):
        hits = confusion[i][i]
        support = sum(confusion[i])
        claimed = sum(row[i] for row in confusion)
        precision = hits / claimed if claimed else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[class_id] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": float(support),
        }
    return scores


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
