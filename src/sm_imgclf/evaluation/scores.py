"""What an evaluation measured: per image answers, and the scores computed from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sm_imgclf.evaluation.calibration import (
    ConfidenceBin,
    expected_calibration_error,
    reliability,
)


@dataclass(frozen=True)
class ScoredImage:
    """One image of an evaluation and the endpoint's answer for it.

    Attributes:
        path: The image file.
        true: Its class id (the folder it is in).
        predicted: The predicted class id.
        score: The predicted class's probability.
        top_k: The best classes as ``(class id, label, probability)``, best first.
        latency_ms: How long its request took.
    """

    path: str
    true: str
    predicted: str
    score: float
    top_k: tuple[tuple[str, str, float], ...]
    latency_ms: float

    @property
    def correct(self) -> bool:
        """Whether the best class is the true one."""
        return self.true == self.predicted


@dataclass
class Scores:
    """The scores of an evaluation (see :class:`~sm_imgclf.Evaluation`).

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
        scored: Every image with its answer and latency, in folder order.
        labels: Display name of each class id seen in the answers.
        source: The evaluated folder.
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
    scored: list[ScoredImage] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def calibration(self) -> list[ConfidenceBin]:
        """Ten confidence bins of the best-class probabilities (a reliability diagram's data)."""
        return reliability([s.score for s in self.scored], [s.correct for s in self.scored])

    @property
    def expected_calibration_error(self) -> float:
        """How far confidence is from accuracy on average (0 is perfectly calibrated)."""
        return expected_calibration_error(self.calibration)

    def confused_pairs(self, top: int = 20) -> list[tuple[str, str, int]]:
        """The most frequent mistakes as ``(true class id, predicted class id, count)``."""
        pairs = [
            (self.class_ids[i], self.class_ids[j], count)
            for i, row in enumerate(self.confusion)
            for j, count in enumerate(row)
            if i != j and count
        ]
        return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))[:top]

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as JSON-ready data."""
        return asdict(self)
