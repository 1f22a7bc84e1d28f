"""Prediction: the answer an endpoint gives for one image, with class names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    """The answer for one image.

    Attributes:
        label: Display name of the most likely class.
        index: Its class index.
        class_id: Its class folder name.
        score: Its probability.
        top_k: The k best classes as ``(label, probability)`` pairs, best first.
        top_k_class_ids: The class ids of ``top_k``, in the same order.
    """

    label: str
    index: int
    class_id: str
    score: float
    top_k: tuple[tuple[str, float], ...]
    top_k_class_ids: tuple[str, ...]
