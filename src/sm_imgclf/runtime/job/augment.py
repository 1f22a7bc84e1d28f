"""Augmentation applied to uint8 tensor batches, so no epoch decodes an image again."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def augment(
    batch: torch.Tensor, policy: str, size: int, generator: torch.Generator
) -> torch.Tensor:
    """Return ``size``-pixel crops of a uint8 NCHW ``batch`` under ``policy``.

    The random choices come from ``generator`` (on the CPU) and the pixels are
    worked on wherever ``batch`` is, so a batch on a GPU is augmented there,
    exactly as the same batch would be on the CPU.

    ``none`` crops the centre, ``light`` takes a random crop and a random
    horizontal flip, ``strong`` a random resized crop (8-100 % of the area),
    a flip and brightness/contrast jitter.
    """
    if policy == "none":
        return center_crop(batch, size)
    if policy == "light":
        return _flip(_random_crop(batch, size, generator), generator)
    return _jitter(_flip(_resized_crop(batch, size, generator), generator), generator)


def center_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the centre ``size`` square of every image."""
    top, left = (batch.shape[2] - size) // 2, (batch.shape[3] - size) // 2
    return batch[:, :, top : top + size, left : left + size]


def _random_crop(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    import torch

    n, _, height, width = batch.shape
    tops = torch.randint(0, height - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator).tolist()
    return torch.stack(
        [
            image[:, t : t + size, le : le + size]
            for image, t, le in zip(batch, tops, lefts, strict=True)
        ]
    )


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import torch

    flip = to_device(torch.rand(batch.shape[0], generator=generator) < 0.5, batch.device)
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)


def _resized_crop(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    import math

    import torch
    from torchvision.transforms.v2 import functional as F

    _, _, height, width = batch.shape
    crops = []
    for image in batch:
        area = height * width * float(torch.empty(1).uniform_(0.08, 1.0, generator=generator))
        ratio = math.exp(
            float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator))
        )
        h = min(height, max(1, round(math.sqrt(area / ratio))))
        w = min(width, max(1, round(math.sqrt(area * ratio))))
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        crops.append(F.resized_crop(image, top, left, h, w, [size, size], antialias=True))
    return torch.stack(crops)


def _jitter(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import torch

    n = batch.shape[0]
    brightness = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=generator)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=generator)
    brightness, contrast = to_device(brightness, batch.device), to_device(contrast, batch.device)
    images = batch.float()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = ((images - mean) * contrast + mean) * brightness
    return images.clamp_(0, 255).to(torch.uint8)


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Random draws made on the CPU, on ``device`` without waiting for it.

    A copy from ordinary memory to a GPU first waits for all its queued work; a
    copy from pinned memory joins the queue.
    """
    if device.type != "cuda":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)
