"""One epoch's training batches, from memory or from shards, resumable from where a stop left them.

A job stopped mid-epoch (SIGTERM: SageMaker's stop, a spot interruption)
keeps its place in the checkpoint: the epoch, the batches done (per streaming
worker too) and the epoch's running totals. The order of an epoch depends
only on the seed and the epoch, so a resumed job takes up the same order at
the next batch; only the random draws of augmentation differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.feed import Batches
    from sm_imgclf.runtime.job.stream import StreamedSplit


class EpochBatches:
    """Yields ``(number, inputs, labels)`` on the device; :meth:`done` after each step.

    Args:
        batches: What turns rows or host images into device batches.
        data: The training split.
        order: For a split in memory, the epoch's order of its rows (this rank's).
        plan: For a streamed split, its :class:`~sm_imgclf.runtime.job.stream.Plan`.
        batch_size: Images per batch.
        generator: The epoch's random generator (augmentation).
        partial: Where an earlier run of this epoch stopped, or ``None``.
    """

    def __init__(
        self,
        batches: Batches,
        data: SplitData | StreamedSplit,
        *,
        order: torch.Tensor | None,
        plan: Any,
        batch_size: int,
        generator: torch.Generator,
        partial: dict[str, Any] | None,
    ) -> None:
        self.batches, self.data, self.order, self.plan = batches, data, order, plan
        self.batch_size, self.generator = batch_size, generator
        workers = len(plan.parts) if plan is not None else 0
        resumed = partial is not None and len(partial.get("workers", [])) == workers
        self.number = int(partial["batches"]) if partial is not None and resumed else 0
        self.workers: list[int] = (
            list(partial["workers"]) if resumed and partial is not None else [0] * workers
        )
        self.resumed = resumed and self.number > 0
        # The cut epoch's running loss, correct count and images seen, carried on.
        self.totals: tuple[float, int, int] = (
            tuple(partial["totals"]) if self.resumed and partial is not None else (0.0, 0, 0)
        )
        self._last = 0

    @property
    def per_epoch(self) -> int:
        """The batches the whole epoch has."""
        if self.plan is not None:
            return int(self.plan.steps)
        assert self.order is not None
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        if self.plan is None:
            yield from self._rows()
            return
        feeder = self.batches.feeder
        labels = self.data.labels
        for worker, index, images in self.data.epoch(self.plan, self.batch_size, self.workers):  # type: ignore[union-attr]
            self._last = worker
            inputs = self.batches.train_images(images, self.data.side, self.generator)
            yield self.number, inputs, labels[index].to(feeder.device)

    def _rows(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        assert self.order is not None
        size = self.batch_size
        for number in range(self.number, self.per_epoch):
            index = self.order[number * size : (number + 1) * size]
            inputs = self.batches.train(self.data, index, self.generator)  # type: ignore[arg-type]
            yield number, inputs, self.batches.feeder.rows(self.data.labels, index)

    def done(self) -> None:
        """Count the batch just trained on."""
        self.number += 1
        if self.workers:
            self.workers[self._last] += 1

    def position(self) -> dict[str, Any]:
        """Where the epoch stands, for the checkpoint."""
        return {"batches": self.number, "workers": list(self.workers)}
