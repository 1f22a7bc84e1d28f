"""The forward pass a server runs, chosen by measuring the candidates when the model loads.

On a CPU, convolutions in channels-last memory format often run faster (oneDNN
kernels), but not for every model and machine; so both are timed on the model's
own input size and the faster kept, with the figures in the server's log.
``SM_IMGCLF_FORWARD=eager`` or ``=channels_last`` skips the measurement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

EAGER, CHANNELS_LAST = "eager", "channels_last"
PATHS = (EAGER, CHANNELS_LAST)
# A path must beat eager by this much to be kept: smaller gains are within noise.
MARGIN = 1.05


@dataclass(frozen=True)
class ForwardChoice:
    """Which forward path serves, and why.

    Attributes:
        path: ``"eager"`` or ``"channels_last"``.
        reason: The measurement or setting that chose it.
    """

    path: str
    reason: str

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` in the memory format the chosen path wants."""
        import torch

        if self.path == CHANNELS_LAST:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch


def choose(model: nn.Module, image_size: int, device: torch.device, *,
           requested: str | None = None,
           timer: Callable[[], float] = time.perf_counter) -> ForwardChoice:
    """Set ``model`` up for the faster path and say which it is.

    Args:
        model: The model in eval mode; converted to channels-last in place if chosen.
        image_size: Side of its square input.
        device: Where it runs; only CPUs are measured.
        requested: ``"eager"``, ``"channels_last"``, ``"auto"`` or ``None``
            (``None`` reads ``SM_IMGCLF_FORWARD``, default ``auto``).
        timer: The clock (for tests).
    """
    import torch

    wanted = (requested or os.environ.get("SM_IMGCLF_FORWARD", "auto")).strip().lower()
    if wanted in PATHS:
        _convert(model, wanted)
        return ForwardChoice(wanted, "set by SM_IMGCLF_FORWARD")
    if device.type != "cpu":
        return ForwardChoice(EAGER, f"not measured on {device.type}")
    probe = torch.zeros(1, 3, image_size, image_size, device=device)
    eager = _time(model, probe, timer)
    _convert(model, CHANNELS_LAST)
    last = _time(model, probe.contiguous(memory_format=torch.channels_last), timer)
    figures = f"batch 1 at {image_size} px: eager {eager * 1000:.1f} ms, " \
              f"channels-last {last * 1000:.1f} ms"
    if last * MARGIN < eager:
        return ForwardChoice(CHANNELS_LAST, f"{eager / last:.2f}x eager ({figures})")
    _convert(model, EAGER)
    return ForwardChoice(EAGER, f"channels-last was not faster ({figures})")


def _convert(model: nn.Module, path: str) -> None:
    import torch

    model.to(memory_format=torch.channels_last if path == CHANNELS_LAST
             else torch.contiguous_format)


def _time(model: nn.Module, inputs: torch.Tensor, timer: Callable[[], float],
          repeats: int = 3) -> float:
    """The best of ``repeats`` forward passes after one warm-up, in seconds."""
    import torch

    best = float("inf")
    with torch.inference_mode():
        model(inputs)
        for _ in range(repeats):
            started = timer()
            model(inputs)
            best = min(best, timer() - started)
    return best
