"""Class-activation heatmaps: Grad-CAM on a spatial feature map, else input gradients.

The layer is found by running the model once, not from a per-family table: Grad-CAM
uses the last module (in execution order) whose output is a square ``N x C x H x W``
map with ``H > 1``, the backbone's last convolutional stage in every convolutional
family (ResNet, EfficientNet, MobileNet, ConvNeXt, RegNet, DenseNet, VGG, Swin's
permuted output ...). Models that go on to mix tokens after their last such map
(vision transformers) get gradients of the class score with respect to the input
pixels instead, since Grad-CAM on a transformer's patch embedding says little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

GRAD_CAM = "grad-cam"
INPUT_GRADIENT = "input-gradient"


@dataclass(frozen=True)
class Target:
    """Where heatmaps of a model come from.

    Attributes:
        method: ``"grad-cam"`` or ``"input-gradient"``.
        layer: The module Grad-CAM reads (``None`` for input gradients).
        grid: Side of the layer's map at the probed input size (``None`` for input gradients).
    """

    method: str
    layer: str | None = None
    grid: int | None = None


def find_target(model: nn.Module, image_size: int) -> Target:
    """Run one blank image through ``model`` and choose where its heatmaps come from."""
    import torch

    seen: list[tuple[str, tuple[int, ...]]] = []

    def record(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                seen.append((name, tuple(output.shape)))

        return hook

    handles = [
        module.register_forward_hook(record(name)) for name, module in model.named_modules() if name
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    spatial = [i for i, (_, shape) in enumerate(seen) if _is_map(shape, image_size)]
    tokens = [i for i, (_, shape) in enumerate(seen) if _is_tokens(shape)]
    if not spatial or (tokens and tokens[-1] > spatial[-1]):
        return Target(INPUT_GRADIENT)
    name, shape = seen[spatial[-1]]
    return Target(GRAD_CAM, name, shape[2])


def heatmaps(
    model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, target: Target
) -> torch.Tensor:
    """Heatmaps of ``classes`` (one index per image), ``N x H x W`` in [0, 1] at input size.

    Args:
        model: The model, in eval mode.
        inputs: Normalised images, ``N x 3 x H x W``.
        classes: The class to explain for each image.
        target: From :func:`find_target`.
    """
    import torch
    import torch.nn.functional as F

    inputs = inputs.detach().clone().requires_grad_(True)
    if target.method == GRAD_CAM:
        maps, grads = _grad_cam_parts(model, inputs, classes, target.layer or "")
        cams = F.relu((grads.mean(dim=(2, 3), keepdim=True) * maps).sum(dim=1, keepdim=True))
        cams = F.interpolate(cams, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    else:
        score = model(inputs).gather(1, classes[:, None]).sum()
        (grads,) = torch.autograd.grad(score, inputs)
        # Pixel gradients are speckled; averaging over a small window shows the regions.
        window = max(3, inputs.shape[-1] // 16) | 1
        cams = F.avg_pool2d(
            grads.abs().amax(dim=1, keepdim=True),
            window,
            stride=1,
            padding=window // 2,
            count_include_pad=False,
        )
    return _unit_range(cams[:, 0].detach())


def _grad_cam_parts(
    model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, layer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        captured.append(output)
        # Later in-place operations (DenseNet's final ReLU) then change a copy, not the map.
        return output.clone()

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        score = model(inputs).gather(1, classes[:, None]).sum()
    finally:
        handle.remove()
    maps = captured[-1]
    (grads,) = torch.autograd.grad(score, maps)
    return maps.detach(), grads


def _unit_range(cams: torch.Tensor) -> torch.Tensor:
    import torch

    flat = cams.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = high - low
    # A map with no positive evidence anywhere stays all zeros instead of amplified noise.
    scale = torch.where(
        span > 1e-6 * high.abs().clamp_min(1e-30), 1 / span.clamp_min(1e-30), torch.zeros_like(span)
    )
    return (cams - low[:, None, None]) * scale[:, None, None]


def _is_map(shape: tuple[int, ...], image_size: int) -> bool:
    return len(shape) == 4 and shape[2] == shape[3] and 1 < shape[2] < image_size


def _is_tokens(shape: tuple[int, ...]) -> bool:
    if len(shape) != 3 or shape[1] < 4:
        return False
    return any(math.isqrt(n) ** 2 == n for n in (shape[1], shape[1] - 1))


def _device(model: nn.Module) -> torch.device:
    import torch

    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
