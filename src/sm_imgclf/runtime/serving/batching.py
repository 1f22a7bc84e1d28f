"""Dynamic batching: concurrent requests share one forward pass."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sm_imgclf.runtime.serving.handler import Batch, LoadedModel, RequestError, predict_fn


@dataclass
class _Pending:
    batch: Batch
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


class Batcher:
    """Collects requests for up to ``max_wait`` seconds or ``max_batch`` images, then predicts.

    Args:
        model: The loaded model.
        max_batch: Images per forward pass (a single larger request still runs whole).
        max_wait: Seconds the first request of a batch waits for company.
        queue_size: Requests waiting at most; more are refused with 503.
    """

    def __init__(self, model: LoadedModel, *, max_batch: int = 32, max_wait: float = 0.005,
                 queue_size: int = 128) -> None:
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.queue: queue.Queue[_Pending] = queue.Queue(maxsize=queue_size)
        self.batches = 0
        threading.Thread(target=self._run, name="batcher", daemon=True).start()

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Queue ``batch`` and wait for its share of a forward pass."""
        pending = _Pending(batch)
        try:
            self.queue.put_nowait(pending)
        except queue.Full:
            raise RequestError("The endpoint is busy: its queue is full. Retry shortly.",
                               status=503) from None
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _run(self) -> None:
        while True:
            group = self._collect()
            try:
                self._forward(group)
            except BaseException as error:
                for pending in group:
                    pending.error = error
                    pending.done.set()

    def _collect(self) -> list[_Pending]:
        group = [self.queue.get()]
        count = len(group[0].batch.images)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                pending = self.queue.get(timeout=remaining) if remaining > 0 else \
                    self.queue.get_nowait()
            except queue.Empty:
                break
            group.append(pending)
            count += len(pending.batch.images)
        return group

    def _forward(self, group: list[_Pending]) -> None:
        import torch

        images = torch.cat([pending.batch.images for pending in group])
        result = predict_fn(Batch(images, 1), self.model)
        self.batches += 1
        start = 0
        for pending in group:
            rows = len(pending.batch.images)
            pending.result = {**result, "top_k": pending.batch.top_k,
                              "probabilities": result["probabilities"][start:start + rows]}
            start += rows
            pending.done.set()
