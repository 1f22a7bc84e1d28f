"""The local tuner: an Optuna study whose trials are local training jobs.

``python -m sm_imgclf.backends.local.tuner <folder>`` runs the tuning run
described by ``<folder>/spec.json`` in its own process session, like a
SageMaker tuning job runs beside the caller. The study lives in
``study.journal`` (an append-only file that survives a kill), so a rerun with
the same name carries on: finished trials are kept, and trials cut short
resume their training jobs from their checkpoints. ``status.json`` and
``trials.json`` are rewritten after every change for readers.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sm_imgclf.backends.local.backend import LocalBackend
from sm_imgclf.backends.local.runner import (
    BACKEND_OPTIONS,
    LOG,
    SPEC,
    listen_for_stop,
    write_status,
)
from sm_imgclf.contracts.costs import budget_refusal
from sm_imgclf.contracts.hyperparameters import BY_NAME
from sm_imgclf.contracts.metrics import METRIC_NAMES, merge_rows, parse_metrics
from sm_imgclf.contracts.status import TERMINAL, JobState
from sm_imgclf.contracts.tuning import Strategy, TuningSpec
from sm_imgclf.errors import BackendError
from sm_imgclf.runtime.optuna_study import open_study, suggest, trial_record

TRIALS, STUDY = "trials.json", "study.journal"
FAIL_FAST = 3  # failed trials, with none completed, that end a run early


class ObjectiveMissingError(Exception):
    """A trial finished without printing the objective metric."""


@dataclass
class _Active:
    """A running trial and what has been read of its job's log."""

    trial: Any
    job_name: str
    reported: int = 0  # the last epoch reported to the study
    released: int = 0  # the last epoch the job was let go on from
    pruned_at: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    cursor: Any = None

    def metrics(self, backend: LocalBackend) -> tuple[list[dict[str, Any]], bool]:
        """The job's metric rows, and whether its log grew since the last call."""
        lines, self.cursor = backend.training_log(self.job_name, self.cursor)
        self.rows.extend(parse_metrics(lines))
        return merge_rows(self.rows), bool(lines)


class LocalTuner:
    """Runs one tuning run to its end; :func:`main` is its process entry point.

    Args:
        spec: The tuning run.
        backend: The local backend whose jobs are the trials.
        folder: The run's folder.
        poll: Seconds between looks at the running trials.
    """

    def __init__(
        self, spec: TuningSpec, backend: LocalBackend, folder: Path, poll: float = 0.05
    ) -> None:
        self.spec, self.backend, self.folder, self.poll = spec, backend, folder, poll
        self.study = open_study(spec, folder / STUDY, backend.root / "tuning")
        self.active: dict[int, _Active] = {}
        self.stop_reason: str | None = None
        self.stopping = False
        self.changed = True
        # With a pruner, each trial waits after every epoch for its verdict, so a pruned
        # trial stops exactly where it was judged, however loaded the machine is.
        self.gated = spec.strategy is Strategy.HYPERBAND or spec.early_stopping == "auto"

    def log(self, message: str) -> None:
        """Append a line to the run's log."""
        with (self.folder / LOG).open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def run(self) -> dict[str, Any]:
        """Run trials until ``max_jobs`` have ended; return the final status fields."""
        self._reattach()
        while not self.stopping:
            if self.changed:  # the study is read only when a trial started, ended or reported
                if self._failing():
                    self._stop_all()
                    return self._failed(f"The first {FAIL_FAST} trials failed")
                self._fill()
                if not self.active:
                    break
                self._publish()
            time.sleep(self.poll)
            for number in list(self.active):
                self._follow(number)
        if self.stopping:
            self._stop_all()
            self.log("stopped; run it again with the same name to carry on")
            return {"status": "Stopped"}
        if not self._trials("COMPLETE", "PRUNED", "FAIL") and self.stop_reason:
            return self._failed(f"{self.stop_reason}: not even one trial fits")
        if not self._trials("COMPLETE"):
            return self._failed(f"All {len(self._trials('FAIL'))} trials failed")
        return {"status": "Completed", "stop_reason": self.stop_reason}

    def _trials(self, *states: str) -> list[Any]:
        from optuna.trial import TrialState

        wanted = tuple(TrialState[s] for s in states)
        return [
            t
            for t in self.study.get_trials(deepcopy=False, states=wanted)
            if not t.user_attrs.get("warm_start")
        ]

    def _fill(self) -> None:
        started = len(self._trials("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
        while len(self.active) < self.spec.max_parallel_jobs and started < self.spec.max_jobs:
            if self._over_budget():
                return
            trial = self.study.ask()
            values = suggest(trial, self.spec.space_map)
            name = self.spec.trial_job_name(trial.number)
            trial.set_user_attr("job_name", name)
            trial.set_user_attr("values", values)
            self._start(trial, name)
            shown = " ".join(f"{k}={v}" for k, v in values.items())
            self.log(f"trial {trial.number} started as {name}: {shown}")
            started += 1

    def _over_budget(self) -> bool:
        """Whether another trial could pass ``max_cost`` (only with a price per hour)."""
        rate = self.backend.price_per_hour * self.spec.training.instance_count
        if self.stop_reason is not None:
            return True
        if self.spec.max_cost is None or rate <= 0:
            return False
        ended = self._trials("COMPLETE", "PRUNED", "FAIL")
        spent = (
            sum(
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in ended
                if t.datetime_complete and t.datetime_start
            )
            / 3600
        )
        self.stop_reason = budget_refusal(
            self.spec.max_cost, rate, self.spec.training.max_run / 3600, spent, len(self.active)
        )
        if self.stop_reason is not None:
            self.log(self.stop_reason)
        return self.stop_reason is not None

    def _start(self, trial: Any, name: str) -> None:
        changes = {k: BY_NAME[k].parse(v) for k, v in trial.user_attrs["values"].items()}
        self.backend.start_training(
            self.spec.trial_spec(trial.number, changes), epoch_gate=self.gated
        )
        self.active[trial.number] = _Active(trial, name)
        self.changed = True

    def _reattach(self) -> None:
        import optuna

        for frozen in self._trials("RUNNING"):
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            name = frozen.user_attrs["job_name"]
            reported = max(frozen.intermediate_values, default=0)
            try:
                status: JobState | None = self.backend.describe_training(name).status
            except BackendError:  # the job never got as far as its folder
                status = None
            if status in (JobState.FAILED, JobState.STOPPED, None):
                self._start(trial, name)  # the job resumes from its checkpoint
                self.log(f"trial {frozen.number} resumed as {name}")
            else:
                self.active[frozen.number] = _Active(trial, name)
            self.active[frozen.number].reported = reported

    def _follow(self, number: int) -> None:
        active = self.active[number]
        # The status first: a job seen ended has written its whole log by then.
        status = self.backend.describe_training(active.job_name)
        metrics, grew = active.metrics(self.backend)
        epochs = [m for m in metrics if m["epoch"] is not None]
        if grew:
            self._judge(active, epochs)
        if not status.status.terminal:
            return
        del self.active[number]
        self.changed = True
        active.trial.set_user_attr("epochs", max((m["epoch"] for m in epochs), default=0))
        if status.status is JobState.COMPLETED:
            self._complete(active, metrics)
        elif active.pruned_at is not None:
            self.study.tell(active.trial, state=_state("PRUNED"))
            self.log(f"trial {number} pruned after epoch {active.pruned_at}")
        elif status.status is JobState.STOPPED and self.stopping:
            self.active[number] = active  # stays RUNNING in the study: a rerun resumes it
        else:
            reason = status.failure_reason or f"the training job was {status.status.lower()}"
            active.trial.set_user_attr("failure_reason", reason[-2000:])
            self.study.tell(active.trial, state=_state("FAIL"))
            self.log(f"trial {number} failed: {reason.strip().splitlines()[-1]}")

    def _judge(self, active: _Active, epochs: list[dict[str, Any]]) -> None:
        """Report new epochs to the study; stop a trial it prunes, let the others go on."""
        last = self.spec.training.hyperparameters.epochs
        for row in epochs:
            epoch, value = row["epoch"], row.get(self.spec.objective)
            if epoch > active.reported and value is not None and active.pruned_at is None:
                active.trial.report(float(value), epoch)
                active.reported = epoch
                self.changed = True
                # A verdict at the last epoch would discard a finished model: none is asked.
                if epoch < last and not math.isnan(value) and active.trial.should_prune():
                    self._prune(active, epoch, float(value))
            if active.pruned_at is None and epoch > active.released and self.gated:
                self.backend.continue_training(active.job_name, epoch)
                active.released = epoch

    def _prune(self, active: _Active, epoch: int, value: float) -> None:
        active.pruned_at = epoch
        rule = (
            "outside the top third at this rung"
            if self.spec.strategy is Strategy.HYPERBAND
            else "below the median of earlier trials at this epoch"
        )
        active.trial.set_user_attr(
            "note", f"pruned at epoch {epoch}: {self.spec.objective}={value:.4f}, {rule}"
        )
        self.backend.stop_training(active.job_name)

    def _complete(self, active: _Active, metrics: list[dict[str, Any]]) -> None:
        values = [m[self.spec.objective] for m in metrics if self.spec.objective in m]
        if not values:
            printed = sorted({k for m in metrics for k in m if k in METRIC_NAMES})
            self.study.tell(active.trial, state=_state("FAIL"))
            raise ObjectiveMissingError(
                f"The objective {self.spec.objective!r} never appeared in the log of "
                f"{active.job_name}; it printed {printed or 'no metrics'}. Choose one of "
                "those, or pass the channel the objective is computed on."
            )
        value = values[-1]
        if active.pruned_at is not None:  # the job finished before the verdict reached it
            active.trial.set_user_attr(
                "note",
                f"a pruning verdict at epoch {active.pruned_at} came after the job "
                "had finished; kept as completed",
            )
        self.study.tell(active.trial, value if math.isfinite(value) else math.nan)
        self.log(f"trial {active.trial.number} completed: {self.spec.objective}={value:.4f}")

    def _failing(self) -> bool:
        failed = self._trials("FAIL")
        return (
            not self._trials("COMPLETE")
            and len(failed) >= min(FAIL_FAST, self.spec.max_jobs)
            and len(failed) < self.spec.max_jobs
        )

    def _failed(self, what: str) -> dict[str, Any]:
        reasons = [
            f"{t.user_attrs.get('job_name')}: {t.user_attrs.get('failure_reason')}"
            for t in self._trials("FAIL")
        ]
        reason = f"{what}; nothing is left to tune. Their reasons:\n" + "\n".join(reasons)
        self.log(reason)
        return {"status": "Failed", "failure_reason": reason}

    def _stop_all(self) -> None:
        for active in self.active.values():
            self.backend.stop_training(active.job_name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            self.backend.describe_training(a.job_name).status not in TERMINAL
            for a in self.active.values()
        ):
            time.sleep(self.poll)

    def _publish(self) -> None:
        if not self.changed:
            return
        self.changed = False
        records = [
            asdict(trial_record(t))
            for t in self.study.get_trials(deepcopy=False)
            if not t.user_attrs.get("warm_start")
        ]
        partial = self.folder / f".{TRIALS}.partial"
        partial.write_text(json.dumps(records, indent=1))
        partial.replace(self.folder / TRIALS)
        best = _best(self.study)
        write_status(self.folder, best_job=best)


def _best(study: Any) -> str | None:
    try:
        return str(study.best_trial.user_attrs.get("job_name"))
    except ValueError:
        return None


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def main(folder: Path) -> int:
    """Run the tuning run in ``folder`` and record how it ended."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TuningSpec.from_dict(json.loads((folder / SPEC).read_text()))
    # Parallel trials share this machine's cores; more threads than cores makes each
    # job several times slower than running them one after another.
    threads = max(1, (os.cpu_count() or 1) // spec.max_parallel_jobs)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    options = (
        json.loads((folder / BACKEND_OPTIONS).read_text())
        if (folder / BACKEND_OPTIONS).is_file()
        else {}
    )
    tuner = LocalTuner(spec, LocalBackend(folder.parents[1], **options), folder)

    def stop() -> None:
        tuner.stopping = True
        write_status(folder, status="Stopping")

    if listen_for_stop(folder, stop):
        stop()
    try:
        outcome = tuner.run()
    except ObjectiveMissingError as error:
        tuner._stop_all()
        tuner.log(str(error))
        outcome = {"status": "Failed", "failure_reason": str(error)}
    except Exception as error:  # the reason must reach the caller, whatever it is
        import traceback

        tuner.log(traceback.format_exc())
        outcome = {"status": "Failed", "failure_reason": f"{type(error).__name__}: {error}"}
    tuner.changed = True
    tuner._publish()
    write_status(folder, ended=time.time(), **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
