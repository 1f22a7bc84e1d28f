"""Measured training speed, and the time a job is expected to take from it.

A job prints ``epoch_seconds=`` and ``train_images=`` on every epoch line.
From a completed job's log the library keeps its speed (training images per
second of epoch, validation included) under a key naming what decides it:
where it ran, the model, the image size, what is trained and whether the head
trained on cached features. A later job with the same key is expected to take
``epochs x training images / speed``; one with another key has no expectation,
and nothing is guessed.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from sm_imgclf.contracts.training import TrainingSpec

_EPOCH_SPEED = re.compile(r"^epoch=\d+ .*\bepoch_seconds=([0-9.eE+-]+) train_images=(\d+)")


@dataclass(frozen=True)
class Speed:
    """How fast a completed job trained.

    Attributes:
        images_per_second: Training images per second of epoch (the median epoch).
        job: The job it was measured on.
        as_of: The day it was measured (``YYYY-MM-DD``).
    """

    images_per_second: float
    job: str
    as_of: str


@dataclass(frozen=True)
class Expected:
    """The time a job is expected to train, and how that was worked out.

    Attributes:
        seconds: Expected training seconds (epochs only: start-up, decoding
            and the backbone pass before the first epoch are not counted).
        basis: The sum in words, naming the job it was measured on.
    """

    seconds: float
    basis: str


def speed_key(where: str, spec: TrainingSpec) -> str:
    """The key of the speeds that apply to ``spec`` run ``where`` (an instance type or "local")."""
    hp = spec.hyperparameters
    cached = spec.trainable == ("head",) and hp.augmentation == "none"
    return "|".join(
        (
            where,
            str(spec.instance_count),
            spec.model,
            str(hp.image_size),
            ",".join(spec.trainable),
            "features" if cached else "images",
        )
    )


def speed_from_log(lines: Iterable[str]) -> float | None:
    """Training images per epoch-second, the median over a log's epoch lines."""
    rates = [
        int(m.group(2)) / float(m.group(1))
        for line in lines
        if (m := _EPOCH_SPEED.match(line)) and float(m.group(1)) > 0
    ]
    return statistics.median(rates) if rates else None


def expected(spec: TrainingSpec, speed: Speed, images: int) -> Expected:
    """The time ``spec`` should take at ``speed`` over ``images`` training images."""
    epochs = spec.hyperparameters.epochs
    seconds = epochs * images / speed.images_per_second
    return Expected(
        seconds,
        f"{epochs} epochs x {images:,} images at "
        f"{speed.images_per_second:,.1f} images/s, measured by job "
        f"{speed.job} on {speed.as_of}",
    )
