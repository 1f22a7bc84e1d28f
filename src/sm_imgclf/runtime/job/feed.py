"""Batches to the training device without making it wait for the host.

On a GPU a copy from ordinary (pageable) host memory waits for all queued GPU
work before it starts, so every step would stall. Each batch is instead
gathered into a page-locked (pinned) buffer and copied asynchronously; two
buffers per shape take turns, and a buffer is refilled only once the copy
that last read it has finished. On a CPU the batch is a plain gather.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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
