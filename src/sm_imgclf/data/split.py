"""Stratified splitting: each class is cut in the same proportions."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

from sm_imgclf._params import bad_value, check_number

K = TypeVar("K", bound=Hashable)


def stratified_split(
    labels: Sequence[K], fractions: dict[str, float], seed: int, rest: str = "train"
) -> list[str]:
    """Assign each item a split name, class by class, reproducibly.

    Args:
        labels: The class of each item, in a stable order.
        fractions: Share of each class for each named split, e.g. ``{"valid": 0.1}``.
        seed: Seed of the shuffle; the same inputs and seed give the same split.
        rest: The split that takes what the fractions leave.

    Returns:
        The split name of each item, in the order of ``labels``.

    Every class keeps at least one item in ``rest``; a class too small to give
    each split one item gives what it can, in the order of ``fractions``.
    """
    for name, share in fractions.items():
        check_number(name, share, low=0.0, high=1.0)
    if sum(fractions.values()) >= 1.0:
        raise bad_value(
            "the split fractions", "a sum below 1 so that training keeps images", fractions
        )
    by_class: dict[K, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    assigned = [rest] * len(labels)
    rng = random.Random(seed)
    for label in sorted(by_class, key=str):
        indices = by_class[label]
        rng.shuffle(indices)
        start = 0
        for name, share in fractions.items():
            count = min(round(len(indices) * share), len(indices) - 1 - start)
            for index in indices[start : start + max(count, 0)]:
                assigned[index] = name
            start += max(count, 0)
    return assigned
