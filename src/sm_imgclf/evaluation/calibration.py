"""Calibration: does a model's confidence match how often it is right?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sm_imgclf._params import bad_value


@dataclass(frozen=True)
class ConfidenceBin:
    """Predictions whose confidence fell in ``[low, high)`` (the last bin includes 1).

    Attributes:
        low: Lower edge.
        high: Upper edge.
        count: Predictions in the bin.
        confidence: Their mean confidence (0 when empty).
        accuracy: Share of them that were right (0 when empty).
    """

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[ConfidenceBin]:
    """Group predictions into ``bins`` equal-width confidence bins.

    Raises:
        ConfigurationError: Mismatched lengths, or fewer than one bin.
    """
    if bins < 1:
        raise bad_value("bins", "a positive number of bins", bins)
    if len(confidences) != len(correct):
        raise bad_value("correct", f"one entry per confidence ({len(confidences)})", len(correct))
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, hit in zip(confidences, correct, strict=True):
        members[min(int(confidence * bins), bins - 1)].append((confidence, hit))
    return [
        ConfidenceBin(
            i / bins,
            (i + 1) / bins,
            len(group),
            sum(c for c, _ in group) / len(group) if group else 0.0,
            sum(h for _, h in group) / len(group) if group else 0.0,
        )
        for i, group in enumerate(members)
    ]


def expected_calibration_error(bins: Sequence[ConfidenceBin]) -> float:
    """The gap between confidence and accuracy, averaged over bins weighted by their size."""
    total = sum(b.count for b in bins)
    if not total:
        return 0.0
    return sum(b.count * abs(b.accuracy - b.confidence) for b in bins) / total
