"""Batches to the training device without making it wait for the host.

Training batches are augmented where :class:`Batches` is told (on a GPU, after
the uint8 batch crossed) and normalised on the device.

On a GPU a copy from ordinary (pageable) host memory waits for all queued GPU
work before it starts, so every step would stall. Each batch is instead
gathered into a page-locked (pinned) buffer and copied asynchronously; two
buffers per shape take turns, and a buffer is refilled only once the copy
that last read it has finished. On a CPU the batch is a plain gather.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sm_imgclf.runtime.images import normalise
from sm_imgclf.runtime.job.augment import augment, center_crop

if TYPE_CHECKING:
    import torch

    from sm_imgclf.runtime.job.data import SplitData

SLOTS = 2  # one buffer being copied from while the next batch is gathered into the other


@dataclass
class _Slot:
    buffer: Any = None  # pinned host memory, grown to the largest batch seen
    copied: Any = None  # the CUDA event recorded after the copy that last read it


@dataclass
class Feeder:
    """Moves rows of host tensors to ``device``, through pinned buffers on CUDA."""

    device: torch.device
    _slots: dict[tuple[Any, ...], list[_Slot]] = field(default_factory=dict)
    _turns: dict[tuple[Any, ...], int] = field(default_factory=dict)

    @property
    def pinned(self) -> bool:
        """Whether batches go through pinned buffers (only towards a CUDA device)."""
        return self.device.type == "cuda"

    def rows(self, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``source[index]`` on the device; on CUDA the copy may still be under way."""
        if not self.pinned:
            return source[index].to(self.device)
        import torch

        slot = self._next_slot((tuple(source.shape[1:]), source.dtype))
        if slot.copied is not None:
            slot.copied.synchronize()  # the copy that last read this buffer is done
        if slot.buffer is None or slot.buffer.shape[0] < len(index):
            # An ordinary tensor even when first needed under inference mode (evaluation):
            # training writes into the same buffer later, which an inference tensor refuses.
            with torch.inference_mode(False):
                slot.buffer = torch.empty((len(index), *source.shape[1:]), dtype=source.dtype,
                                          pin_memory=True)
        staged: torch.Tensor = slot.buffer[:len(index)]
        torch.index_select(source, 0, index, out=staged)
        moved = staged.to(self.device, non_blocking=True)
        slot.copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
        slot.copied.record()
        return moved

    def span(self, source: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``source`` on the device."""
        if not self.pinned:
            return source[start:stop].to(self.device)
        import torch

        return self.rows(source, torch.arange(start, min(stop, source.shape[0])))

    def _next_slot(self, key: tuple[Any, ...]) -> _Slot:
        slots = self._slots.setdefault(key, [_Slot() for _ in range(SLOTS)])
        turn = self._turns.get(key, 0)
        self._turns[key] = (turn + 1) % SLOTS
        return slots[turn]


@dataclass
class Batches:
    """Training and evaluation batches on the device, from splits held on the host.

    Images cross as uint8 (a quarter of float32's bytes) and are normalised on
    the device; cached features cross as they are.
    """

    feeder: Feeder
    image_size: int
    augmentation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    features: bool = False
    augment_on_device: bool = False  # on a GPU: the uint8 batch crosses, the GPU augments it
    channels_last: bool = False

    def train(self, data: SplitData, index: torch.Tensor, generator: torch.Generator
              ) -> torch.Tensor:
        """The rows ``index`` of ``data``, augmented and normalised, on the device."""
        if self.features:
            return self.feeder.rows(data.images, index)
        policy, size = self.augmentation, self.image_size
        if self.augment_on_device:
            batch = augment(self.feeder.rows(data.images, index), policy, size, generator)
        else:
            batch = augment(data.images[index], policy, size, generator)
            batch = batch.to(self.feeder.device)
        return self._layout(normalise(batch, self.mean, self.std))

    def evaluation(self, data: SplitData, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``data``, centre-cropped and normalised, on the device."""
        batch = self.feeder.span(data.images, start, stop)
        if self.features:
            return batch
        if batch.shape[-1] != self.image_size:
            batch = center_crop(batch, self.image_size)
        return self._layout(normalise(batch, self.mean, self.std))

    def _layout(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        if self.channels_last:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
