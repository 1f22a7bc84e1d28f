"""Decoding and resizing images into uint8 tensors, the same way in training and serving."""

from __future__ import annotations

import functools
import io
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Evaluation resizes the shorter side to image_size / CROP_RATIO, then crops the
# centre square: the torchvision recipe (256 then 224). An image smaller than the
# square is cropped to its own centre square and that is enlarged to the square
# (by torch, as a training batch is): upscaled 8-px digits keep their edges, and
# a training job can hold CIFAR-10's 32-px images at 32 px until the batch.
CROP_RATIO = 0.875
# Bump when decoding, resizing or cropping changes the pixels a model sees: stored
# backbone features are keyed by it. 2: small images are no longer cropped.
# 3: small images are enlarged by torch from their own square.
IMAGE_PIPELINE = 3


def resize_size(image_size: int) -> int:
    """Return the shorter-side size used before the centre crop."""
    return round(image_size / CROP_RATIO)


def open_rgb(data: bytes, shorter: int | None = None) -> Image.Image:
    """Decode image bytes upright (EXIF applied) and in RGB, whatever the mode.

    With ``shorter``, a JPEG is decoded directly at the smallest DCT scale
    (1/2, 1/4, 1/8) whose shorter side still reaches ``shorter``: much less
    work, and the resize that follows gives the same kind of image. Training
    and serving both decode this way, so they see identical pixels.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        if shorter and opened.format == "JPEG":
            scale = shorter / min(opened.size)
            opened.draft(
                "RGB", (math.ceil(opened.size[0] * scale), math.ceil(opened.size[1] * scale))
            )
        image: Image.Image = ImageOps.exif_transpose(opened)
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            image = image.point(lambda v: v / 256).convert("L")
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        return image.convert("RGB")


def square_tensor(image: Image.Image, side: int, *, shorter: int | None = None) -> torch.Tensor:
    """Resize the shorter side to ``shorter`` (default ``side``) and crop the centre square.

    An image whose shorter side is under ``side`` is cropped to its own centre
    square, which :func:`grow` then enlarges to ``side``: a square one is kept
    whole, a longer one loses only what its longer side has beyond the square.
    """
    own = min(image.size)
    if own < side:
        return grow(own_square(image, own), side)
    return own_square(image, side, shorter=shorter)


def own_square(image: Image.Image, side: int, *, shorter: int | None = None) -> torch.Tensor:
    """The centre ``side`` square after resizing the shorter side to ``shorter`` (or ``side``)."""
    import numpy as np
    import torch
    from PIL import Image

    width, height = image.size
    scale = max(shorter or side, side) / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def grow(images: torch.Tensor, side: int) -> torch.Tensor:
    """Enlarge uint8 square images (CHW or NCHW) to ``side`` pixels, bilinearly, where they are.

    Images already ``side`` pixels (or more) come back as they are. Training
    batches held at their own small size and single images in serving both pass
    here, so they reach the model with the same pixels.
    """
    if images.shape[-1] >= side:
        return images
    import torch
    from torch.nn import functional as F

    batch = images if images.dim() == 4 else images.unsqueeze(0)
    enlarged = F.interpolate(batch.float(), size=(side, side), mode="bilinear", align_corners=False)
    enlarged = enlarged.round_().clamp_(0, 255).to(torch.uint8)
    return enlarged if images.dim() == 4 else enlarged[0]


def eval_tensor(data: bytes, image_size: int) -> torch.Tensor:
    """Decode bytes into the uint8 CHW tensor evaluation and serving feed the model."""
    shorter = resize_size(image_size)
    return square_tensor(open_rgb(data, shorter), image_size, shorter=shorter)


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Turn a uint8 NCHW batch into normalised float32."""
    m, s = _channel_constants(tuple(mean), tuple(std), batch.device)
    return (batch.float().div_(255.0) - m) / s


@functools.lru_cache(maxsize=16)
def _channel_constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as tensors on ``device``, made once.

    Making them per batch would copy them to a GPU per batch, and such a copy
    waits for all the GPU's queued work first.
    """
    import torch

    # Ordinary tensors even when first asked for under inference mode: training and
    # input gradients use them too.
    with torch.inference_mode(False):
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return m, s


def decode_square(data: bytes, side: int, held: int, shorter: int) -> torch.Tensor:
    """An image's bytes as the uint8 square a split holds: ``side``, or ``held`` when smaller."""
    image = open_rgb(data, shorter)
    if held < side:
        return own_square(image, held)
    return square_tensor(image, side, shorter=shorter)
