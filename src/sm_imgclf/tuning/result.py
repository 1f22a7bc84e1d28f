"""TuningResult: the trials of a tuning run, typed, with the best one and plots."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sm_imgclf._pacing import Pacing
from sm_imgclf.contracts.status import TERMINAL, TuningStatus
from sm_imgclf.errors import BackendError, TuningFailedError
from sm_imgclf.tuning.trial import Trial

if TYPE_CHECKING:
    from sm_imgclf.session import Session


class TuningResult:
    """A tuning run's trials; also a handle to wait for or stop a run in progress.

    Get one from :meth:`~sm_imgclf.TuningRun.run` or :meth:`attach`.

    Args:
        name: The tuning run's name.
        session: The session whose backend runs it.
    """

    def __init__(self, name: str, session: Session) -> None:
        self.name = name
        self.session = session
        self._status: TuningStatus | None = None
        self._trials: list[Trial] = []

    @classmethod
    def attach(cls, name: str, session: Session) -> TuningResult:
        """Return the result of an existing run (raises if the backend does not know it)."""
        result = cls(name, session)
        result.refresh()
        return result

    def __repr__(self) -> str:
        status = self._status.status if self._status else "?"
        return f"TuningResult({self.name!r}, status={status!r}, trials={len(self._trials)})"

    def refresh(self) -> TuningResult:
        """Fetch the run's status and trials from the backend."""
        backend = self.session.backend
        self._status = backend.describe_tuning(self.name)
        self._trials = [Trial.from_record(r, self.session) for r in backend.list_trials(self.name)]
        return self

    @property
    def status(self) -> str:
        """``InProgress``, ``Stopping``, ``Completed``, ``Failed`` or ``Stopped``."""
        return self._current().status

    @property
    def objective(self) -> str:
        """The metric the run optimises."""
        return self._current().objective

    @property
    def direction(self) -> str:
        """``"maximize"`` or ``"minimize"``."""
        return self._current().direction

    @property
    def trials(self) -> list[Trial]:
        """Every trial, in the order they started."""
        self._current()
        return list(self._trials)

    def _current(self) -> TuningStatus:
        if self._status is None or self._status.status not in TERMINAL:
            self.refresh()
        assert self._status is not None
        return self._status

    @property
    def best(self) -> Trial:
        """The best trial that left a model package: a completed one.

        Trials are ranked by the objective of the epoch their package holds;
        :attr:`ranked_by` says how, where the backend's own pick (SageMaker's
        ``BestTrainingJob``, which reads each trial's last report) could differ.
        A pruned or stopped trial may have reported a better objective before it
        ended; :attr:`better_without_package` says so.

        Raises:
            BackendError: No trial has completed yet.
        """
        done = [t for t in self.trials if t.status == "completed" and t.objective is not None]
        if not done:
            raise BackendError(
                f"Tuning run {self.name!r} has no completed trial yet (status {self.status}).",
                name=self.name,
            )
        status = self._current()
        if status.ranked_by is not None:
            return self._top(done)
        return next((t for t in done if t.job_name == status.best_job), None) or self._top(done)

    @property
    def ranked_by(self) -> str | None:
        """How the trials were ranked, where the backend's own ranking could differ."""
        return self._current().ranked_by

    @property
    def better_without_package(self) -> Trial | None:
        """A trial without a model package that reported a better objective than :attr:`best`.

        A pruned trial reports the objective of the epoch it was judged at; ``None``
        when no such trial beat the best.
        """
        try:
            best = self.best
        except BackendError:
            return None
        others = [t for t in self.trials if t.status != "completed" and t.objective is not None]
        if not others:
            return None
        top = self._top(others)
        return top if self._top([best, top]) is top else None  # a tie keeps the best

    def _top(self, trials: list[Trial]) -> Trial:
        pick = max if self.direction == "maximize" else min
        return pick(trials, key=lambda t: t.objective if t.objective is not None else 0.0)

    def wait(
        self,
        *,
        logs: bool = True,
        poll: float = 2.0,
        out: TextIO | None = None,
        stop_on_interrupt: bool | None = None,
    ) -> TuningResult:
        """Block until the run ends, printing trials as they start and end.

        Ctrl-C stops a local run (finished trials are kept; run it again under
        the same name to carry on). A SageMaker run keeps running unless
        ``stop_on_interrupt=True``; the waiting ends and says how to re-attach.

        Raises:
            TuningFailedError: The run failed.
        """
        out = out or sys.stdout
        seen: dict[str, str] = {}
        pace = Pacing(poll, self.session.backend.min_poll_seconds)
        try:
            while True:
                self.refresh()
                before = dict(seen)
                self._print_changes(seen, out if logs else None)
                if self.status in TERMINAL:
                    break
                time.sleep(pace.next(changed=seen != before))
        except KeyboardInterrupt:
            backend = self.session.backend
            if stop_on_interrupt if stop_on_interrupt is not None else backend.stop_on_interrupt:
                print(f"stopping tuning run {self.name} ...", file=out, flush=True)
                self.stop()
            else:
                print(
                    f"stopped waiting; tuning run {self.name} keeps running (and billing). "
                    f"Re-attach with smi.TuningResult.attach({self.name!r}, "
                    "session), or stop it with .stop().",
                    file=out,
                    flush=True,
                )
            raise
        if self.status == "Failed":
            raise TuningFailedError(self.name, self._current().failure_reason)
        return self

    def _print_changes(self, seen: dict[str, str], out: TextIO | None) -> None:
        for trial in self._trials:
            if seen.get(trial.job_name) == trial.status:
                continue
            seen[trial.job_name] = trial.status
            values = " ".join(f"{k}={_short(v)}" for k, v in trial.hyperparameters.items())
            score = "" if trial.objective is None else f" {self.objective}={trial.objective:.4f}"
            if out is not None:
                print(f"{trial.job_name} {trial.status}{score} {values}", file=out, flush=True)

    def stop(self) -> None:
        """Ask the backend to stop the run and its running trials."""
        self.session.backend.stop_tuning(self.name)

    def rows(self) -> list[dict[str, Any]]:
        """One dictionary per trial: name, status, objective, epochs, duration, values, note."""
        return [
            {
                "job_name": t.job_name,
                "status": str(t.status),
                self.objective: t.objective,
                "epochs": t.epochs,
                "duration_s": t.duration,
                **t.hyperparameters,
                "note": t.note,
            }
            for t in self.trials
        ]

    def to_pandas(self) -> Any:
        """The trials as a ``pandas.DataFrame`` (pandas must be installed)."""
        from sm_imgclf._lazy import require

        pandas = require("pandas", extra="pandas")
        return pandas.DataFrame(self.rows())

    def table(self) -> str:
        """A plain-text table: completed trials best first (the best marked ``*``), then the rest.

        Each row gives the epochs the trial's job trained and, for a pruned
        trial, where and why it was stopped.
        """
        from sm_imgclf.tuning.plots import format_table

        try:
            best = self.best.job_name
        except BackendError:
            best = None
        reverse = self.direction == "maximize"
        rows = sorted(
            self.rows(),
            key=lambda r: (r["status"] != "completed", *_sort_key(r[self.objective], reverse)),
        )
        text = format_table(rows, best)
        better = self.better_without_package
        if better is not None:
            text += (
                f"\nnote: {better.job_name} ({better.status}) reported "
                f"{self.objective}={better.objective:.4f}, better than the best, but "
                "left no model package"
            )
        return text

    @property
    def stop_reason(self) -> str | None:
        """Why the run started fewer trials than it could (``max_cost``), if it did."""
        return self._current().stop_reason

    def __str__(self) -> str:
        reason = f"\n{self.stop_reason}" if self.stop_reason else ""
        if self.ranked_by:
            reason += f"\nranked by {self.ranked_by}"
        return f"Tuning run {self.name} ({self.status}, {self.objective})\n{self.table()}{reason}"

    def plot(self, path: str | Path | None = None) -> Any:
        """Plot the objective per trial and against each tuned parameter.

        Args:
            path: Save the figure here (PNG, SVG ... by extension) when given.

        Returns:
            The matplotlib figure.
        """
        from sm_imgclf.tuning.plots import plot_trials

        return plot_trials(self.trials, self.objective, path, self._current().categorical)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _sort_key(value: float | None, reverse: bool) -> tuple[int, float]:
    if value is None:
        return (1, 0.0)
    return (0, -value if reverse else value)
