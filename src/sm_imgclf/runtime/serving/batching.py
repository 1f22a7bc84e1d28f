"""Dynamic batching: concurrent requests share one forward pass, and a lone one never waits.

The server tells the batcher how many requests it is still decoding
(:meth:`Batcher.decoding`). A batch goes as soon as nothing else is queued and
nothing else is on its way; otherwise it waits for company, at most
``max_wait`` and never longer than a forward pass takes (measured), since
waiting longer would cost more than running twice.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
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
    """Collects requests into batches of up to ``max_batch`` images, then predicts.

    Args:
        model: The loaded model.
        max_batch: Images per forward pass (a single larger request still runs whole).
        max_wait: Seconds at most the first request of a batch waits for company
            (only while other requests are being decoded).
        queue_size: Requests waiting at most; more are refused with 503.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        queue_size: int = 128,
    ) -> None:
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait
        self.queue: queue.Queue[_Pending] = queue.Queue(maxsize=queue_size)
        self.batches = 0
        self.waits = 0  # batches that waited for company
        self.forward_seconds: float | None = None  # a moving average
        self._decoding = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="batcher", daemon=True).start()

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Count a request as on its way while the server decodes it."""
        with self._lock:
            self._decoding += 1
        try:
            yield
        finally:
            with self._lock:
                self._decoding -= 1

    def predict(self, batch: Batch) -> dict[str, Any]:
        """Queue ``batch`` and wait for its share of a forward pass."""
        pending = _Pending(batch)
        try:
            self.queue.put_nowait(pending)
        except queue.Full:
            raise RequestError(
                "The endpoint is busy: its queue is full. Retry shortly.", status=503
            ) from None
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
        wait = min(self.max_wait, self.forward_seconds or self.max_wait)
        deadline = time.monotonic() + wait
        waited = False
        while count < self.max_batch:
            try:
                pending = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if not self._decoding or remaining <= 0:
                    break  # nothing else is on its way, or it has waited enough
                waited = True
                try:
                    pending = self.queue.get(timeout=min(remaining, 0.001))
                except queue.Empty:
                    continue
            group.append(pending)
            count += len(pending.batch.images)
        self.waits += waited
        return group

    def _forward(self, group: list[_Pending]) -> None:
        import torch

        images = torch.cat([pending.batch.images for pending in group])
        started = time.perf_counter()
        result = predict_fn(Batch(images, 1), self.model)
        seconds = time.perf_counter() - started
        self.forward_seconds = (
            seconds
            if self.forward_seconds is None
            else (0.8 * self.forward_seconds + 0.2 * seconds)
        )
        self.batches += 1
        start = 0
        for pending in group:
            rows = len(pending.batch.images)
            pending.result = {
                **result,
                "top_k": pending.batch.top_k,
                "probabilities": result["probabilities"][start : start + rows],
            }
            start += rows
            pending.done.set()
