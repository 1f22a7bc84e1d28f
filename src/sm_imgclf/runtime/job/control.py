"""How whoever runs the job steers it: stop requests, and verdicts between epochs.

Optional files and folders, named by the environment:

``SM_IMGCLF_STOP_FILE``
    Once this file exists the job stops at its next step, keeping its last
    checkpoint, as it does on SIGINT. A stop asked for between two signals, or
    before the job could take one, is never lost.
``SM_IMGCLF_EPOCH_GATE``
    A folder. After printing epoch ``N`` (other than the last) the job waits for
    ``<folder>/continue-N`` before it trains epoch ``N+1``. A tuner uses it to
    give its verdict on every epoch before the next one starts, so a trial it
    prunes stops exactly where it was judged, whatever the machine's load.

``SM_IMGCLF_FEATURE_STORE``
    A folder of backbone features that head-only jobs share
    (:mod:`sm_imgclf.runtime.job.feature_store`).

None is set on SageMaker, whose tuner judges trials by their logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

STOP_FILE = "SM_IMGCLF_STOP_FILE"
EPOCH_GATE = "SM_IMGCLF_EPOCH_GATE"
FEATURE_STORE = "SM_IMGCLF_FEATURE_STORE"  # a folder of backbone features jobs share
GATE_PATIENCE_S = 600.0  # a tuner silent this long is gone; the job carries on alone


class StopRequested(KeyboardInterrupt):
    """The job was asked to stop; it ends as on Ctrl-C, with its checkpoint kept."""


@dataclass(frozen=True)
class JobControl:
    """The stop file and the epoch gate of one job; both optional.

    Attributes:
        stop_file: Stop at the next step once this file exists.
        gate: Wait for ``continue-N`` in this folder after epoch ``N``.
    """

    stop_file: Path | None = None
    gate: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobControl:
        """Read the two variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        stop, gate = env.get(STOP_FILE), env.get(EPOCH_GATE)
        return cls(Path(stop) if stop else None, Path(gate) if gate else None)

    def stop_requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.stop_file is not None and self.stop_file.exists()

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was asked for."""
        if self.stop_requested():
            raise StopRequested

    def after_epoch(
        self,
        epoch: int,
        last: bool,
        log: Callable[[str], None] = print,
        poll: float = 0.02,
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        """Wait for the verdict on ``epoch`` (no wait after the last one).

        A stop ends the wait: ``stopping`` says so where the caller stops by
        itself (to package its best epoch); without it the stop raises.
        """
        if self.gate is None or last:
            self._stopped(stopping)
            return
        verdict = self.gate / f"continue-{epoch}"
        waited = time.monotonic()
        while not verdict.exists():
            if self._stopped(stopping):
                return
            if time.monotonic() - waited > GATE_PATIENCE_S:
                log(f"no verdict on epoch {epoch} in {GATE_PATIENCE_S:.0f} s; carrying on")
                return
            time.sleep(poll)

    def _stopped(self, stopping: Callable[[], bool] | None) -> bool:
        if stopping is None:
            self.check()
            return False
        return stopping()
