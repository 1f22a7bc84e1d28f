"""Batches to the training device without making it wait for the host.

Images held at their own small size are enlarged to the split's side first,
on the device where there is one. Training batches are augmented where
:class:`Batches` is told (on a GPU, after the uint8 batch crossed) and
normalised on the device.

On a GPU a copy from ordinary (pageable) host memory waits for all queued GPU
work before it starts, so every step would stall. Each batch is instead
gathered into page-locked (pinned) memory and copied asynchronously, so the
host prepares the next batch while the GPU works. On a CPU the batch is a
plain gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sm_imgclf.runtime.images import grow, normalise
from sm_imgclf.runtime.job.augment import augment, center_crop

if TYPE_CHECKING:
    import torch

    from sm_imgclf.runtime.job.data import SplitData


@dataclass(frozen=True)
class Feeder:
    """Moves rows of host tensors to ``device``, through pinned memory on CUDA."""

    device: torch.device

    @property
    def pinned(self) -> bool:
        """Whether batches go through pinned memory (only towards a CUDA device)."""
        return self.device.type == "cuda"

    def rows(self, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``source[index]`` on the device; on CUDA the copy may still be under way."""
        if not self.pinned:
            return source[index].to(self.device)
        import torch

        # torch's pinned-memory cache hands this block out again only once the copy
        # that reads it has finished, so nothing here waits for the GPU.
        staged = torch.empty((len(index), *source.shape[1:]), dtype=source.dtype, pin_memory=True)
        torch.index_select(source, 0, index, out=staged)
        return staged.to(self.device, non_blocking=True)

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """A whole host tensor on the device, through pinned memory on CUDA."""
        if not self.pinned:
            return images.to(self.device)
        return images.pin_memory().to(self.device, non_blocking=True)

    def span(self, source: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``source`` on the device."""
        if not self.pinned:
            return source[start:stop].to(self.device)
        import torch

        return self.rows(source, torch.arange(start, min(stop, source.shape[0])))


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

    def train(
        self, data: SplitData, index: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The rows ``index`` of ``data``, augmented and normalised, on the device."""
        if self.features:
            return self.feeder.rows(data.images, index)
        if self.augment_on_device:
            return self._augmented(self.feeder.rows(data.images, index), data.side, generator)
        return self._augmented(data.images[index], data.side, generator)

    def train_images(
        self, images: torch.Tensor, side: int, generator: torch.Generator
    ) -> torch.Tensor:
        """A host batch of uint8 images (a streamed split's), augmented and normalised."""
        if self.augment_on_device:
            return self._augmented(self.feeder.batch(images), side, generator)
        return self._augmented(images, side, generator)

    def _augmented(
        self, batch: torch.Tensor, side: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Enlarged to ``side``, augmented, on the device and normalised."""
        batch = augment(grow(batch, side), self.augmentation, self.image_size, generator)
        return self._layout(normalise(batch.to(self.feeder.device), self.mean, self.std))

    def evaluation(self, data: SplitData, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``data``, centre-cropped and normalised, on the device."""
        batch = self.feeder.span(data.images, start, stop)
        if self.features:
            return batch
        batch = grow(batch, data.side)
        if batch.shape[-1] != self.image_size:
            batch = center_crop(batch, self.image_size)
        return self._layout(normalise(batch, self.mean, self.std))

    def _layout(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        if self.channels_last:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
