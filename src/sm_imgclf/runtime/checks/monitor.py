"""The recorder and the profiler together, as the training loop drives them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.runtime.checks.profiler import StepProfiler, SystemSampler
from sm_imgclf.runtime.checks.recorder import Recorder

if TYPE_CHECKING:
    from torch import nn

    from sm_imgclf.contracts.hyperparameters import Hyperparameters


class Monitor:
    """Watches training for the checks and the profiler; records in :mod:`.records`' formats.

    Args:
        folder: Where the records go (``<output>/debug``).
        hp: The job's hyperparameters (``record_every``, ``stop_on``, ``profile_interval``).
        meta: Facts about the data and model for the rules.
        device: The training device.
        log: Where rule triggers are reported.
    """

    def __init__(
        self,
        folder: Path,
        hp: Hyperparameters,
        meta: dict[str, Any],
        device: Any,
        log: Callable[[str], None],
    ) -> None:
        self.recorder = Recorder(folder, hp.record_every, meta, hp.stop_on, log)
        self.profiler = StepProfiler(folder, device, self.recorder.wants)
        self.system = SystemSampler(folder, hp.profile_interval)
        self.system.start()
        self._record: dict[str, Any] | None = None
        self._marks: list[float] = []
        # The recorder's own seconds inside each phase: the split and the step times
        # describe training, not the recording of it.
        self._own = [0.0] * 4

    @property
    def stop(self) -> bool:
        """Whether a rule named in ``stop_on`` triggered."""
        return self.recorder.stop

    def begin(self, step: int, model: nn.Module) -> bool:
        """Start timing a step whose batch is ready; say whether it is recorded."""
        recorded = self.recorder.wants(step)
        if recorded:
            self.profiler.sync()
            with self._recording():
                self.recorder.watch(model)
        self._marks.append(time.perf_counter())
        return recorded

    def mark(self, recorded: bool) -> None:
        """Note the end of a phase (forward, backward ...)."""
        if recorded:
            self.profiler.sync()
        self._marks.append(time.perf_counter())

    def start(self) -> None:
        """Note the start of a step, before its batch is prepared."""
        self._marks = [time.perf_counter()]
        self._own = [0.0] * 4

    def gradients(self, model: nn.Module, step: int, epoch: int, loss: float) -> None:
        """Record gradients after the backward pass of a recorded step."""
        self.profiler.sync()
        with self._recording():
            self._record = self.recorder.gradients(model, step, epoch, loss)

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """Count the time inside as the recorder's, in the phase under way."""
        started = time.perf_counter()
        try:
            yield
        finally:
            phase = min(len(self._marks), len(self._own)) - 1
            self._own[max(phase, 0)] += time.perf_counter() - started

    def end(
        self, step: int, model: nn.Module, recorded: bool, *, amp_skipped: bool = False
    ) -> None:
        """Finish a step: weights of a recorded one, and its times.

        ``amp_skipped`` says the gradient scaler found non-finite gradients and
        skipped the update; the step's record says so and the rules leave it out.
        """
        self.mark(recorded)
        if recorded and self._record is not None:
            if amp_skipped:
                self._record["amp_skipped"] = True
            self.recorder.weights(model, self._record)
            self._record = None
        self.profiler.step(step, self._marks, recorded, self._own)

    def epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch's metrics and step durations."""
        self.recorder.epoch(row)
        self.profiler.epoch(row["epoch"])

    def close(self) -> None:
        """Stop sampling and close every file."""
        self.system.stop()
        self.profiler.close()
        self.recorder.close()
