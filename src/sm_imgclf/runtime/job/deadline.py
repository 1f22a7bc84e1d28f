"""When the job must stop training so that its best epoch is still evaluated and packaged.

SageMaker stops a job at its run limit (``MaxRuntimeInSeconds``) with SIGTERM and
kills it 120 s later; a job that reaches the limit mid-epoch would leave no model.
So the job keeps its own clock: it starts no epoch that its measured epoch time
says cannot end, with the test evaluation and the packaging after it, before the
limit, and it stops at the next step once SIGTERM arrives (AWS's entry point may
never pass the signal on, which is why the clock comes first).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What the clock cannot see: the container's start and the data download before this
# program runs, and the upload of the model after it, as a share of the limit.
SLACK_SHARE = 0.05
SLACK_S = 5.0
PACKAGE_BYTES_PER_S = 50e6  # writing the weights and the archive, slowly


@dataclass
class Deadline:
    """The job's run limit and what it has measured of its own pace.

    Attributes:
        limit_s: Seconds the job may run; 0 means no limit.
        package_s: Seconds packaging is expected to take (from the weights' size).
        test_share: Test images per validation image: evaluating the test split
            takes that many validation passes.
        started: The clock's start (``time.monotonic()``).
        stop_asked: Set when SIGTERM (or a stop of that kind) arrived.
        signalled: Set when that stop was SIGTERM itself.
    """

    limit_s: float = 0.0
    package_s: float = SLACK_S
    test_share: float = 1.0
    started: float = field(default_factory=time.monotonic)
    stop_asked: bool = False
    signalled: bool = False
    epoch_s: float = 0.0
    eval_s: float = 0.0

    def sized(self, model: Any, splits: Mapping[str, Any]) -> Deadline:
        """This clock, told how long packaging ``model`` and testing on ``splits`` take."""
        weight_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        self.package_s = SLACK_S + weight_bytes / PACKAGE_BYTES_PER_S
        valid, test = splits.get("valid"), splits.get("test")
        if test is None:
            self.test_share = 0.0
        elif valid is not None and len(valid):
            self.test_share = len(test) / len(valid)
        return self

    def left(self) -> float:
        """Seconds until the limit, less the slack; infinite without a limit."""
        if not self.limit_s:
            return float("inf")
        slack = SLACK_S + SLACK_SHARE * self.limit_s
        return self.limit_s - slack - (time.monotonic() - self.started)

    def finish_s(self) -> float:
        """What remains to do after training: evaluate the test split and package."""
        return self.eval_s * self.test_share + self.package_s

    def measured(self, epoch_s: float, eval_s: float) -> None:
        """Keep the slowest epoch and validation pass seen."""
        self.epoch_s, self.eval_s = max(self.epoch_s, epoch_s), max(self.eval_s, eval_s)

    def stop_before_next_epoch(self) -> str | None:
        """Why the job must not start another epoch, or ``None`` when it may."""
        if self.signalled:
            return "a stop was asked for (SIGTERM, SageMaker's stop signal)"
        if self.stop_asked:
            return "a stop was asked for"
        need = self.epoch_s + self.finish_s()
        if self.left() < need:
            return (
                f"{max(0.0, self.left()):.0f} s are left of the {self.limit_s:.0f} s run limit, "
                f"and an epoch ({self.epoch_s:.0f} s) with the test evaluation and packaging "
                f"after it ({self.finish_s():.0f} s) would not fit"
            )
        return None

    def stop_now(self) -> bool:
        """Whether to leave the epoch at this step: a stop, or only the finish fits now."""
        return self.stop_asked or self.left() < self.finish_s()
