"""What backends report: job, tuning-run and trial states, and the records carrying them.

Jobs and tuning runs speak SageMaker's words (``InProgress``, ``Completed``
...), because that is what a user reads in the AWS console for the same job.
Trials speak the tuner's own vocabulary in lower case (``completed``,
``pruned`` ...): SageMaker has no ``pruned`` state, and a trial is an outcome
of the search rather than a service resource. Both enums are strings, so
``status == "Completed"`` keeps working, and both accept either casing when
built from a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class _CaseInsensitive(StrEnum):
    @classmethod
    def _missing_(cls, value: object) -> _CaseInsensitive | None:
        if isinstance(value, str):
            for member in cls:
                if member.value.casefold() == value.casefold():
                    return member
        return None


class JobState(_CaseInsensitive):
    """The state of a training job or a tuning run, in SageMaker's words."""

    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    DELETING = "Deleting"  # tuning runs only
    DELETE_FAILED = "DeleteFailed"  # tuning runs only

    @property
    def terminal(self) -> bool:
        """Whether the job has ended and its state will not change again."""
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)


class TrialState(_CaseInsensitive):
    """The outcome of one tuning trial."""

    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        """Whether the trial has ended."""
        return self is not TrialState.RUNNING


TERMINAL: frozenset[str] = frozenset(state for state in JobState if state.terminal)
"""Job and tuning-run states that never change again."""


@dataclass(frozen=True)
class JobStatus:
    """What a backend reports about a job.

    Attributes:
        status: A :class:`JobState`: ``InProgress``, ``Stopping``, ``Completed``,
            ``Failed`` or ``Stopped``.
        failure_reason: Why it failed (the end of the traceback), if it did.
        model_uri: The model package (``model.tar.gz``) once it completed.
        detail: Backend-specific extras (SageMaker's secondary status ...).
    """

    status: JobState
    failure_reason: str | None = None
    model_uri: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobState(self.status))


@dataclass(frozen=True)
class TuningStatus:
    """What a backend reports about a tuning run.

    Attributes:
        status: A :class:`JobState`, as for a training job.
        failure_reason: Why the run failed.
        best_job: The training job of the best trial so far.
        objective: The metric optimised.
        direction: ``"maximize"`` or ``"minimize"``.
        categorical: The tuned hyperparameters whose values are categories.
        stop_reason: Why the run started fewer trials than it could (a budget).
        ranked_by: How trials are ranked where the service's own ranking could
            differ; the best trial is then the top of the trials' objectives,
            not ``best_job``.
    """

    status: JobState
    failure_reason: str | None = None
    best_job: str | None = None
    objective: str = "valid:accuracy"
    direction: str = "maximize"
    categorical: tuple[str, ...] = ()
    stop_reason: str | None = None
    ranked_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobState(self.status))


@dataclass(frozen=True)
class TrialRecord:
    """One trial as a backend reports it; :class:`~sm_imgclf.TuningResult` types it.

    Attributes:
        job_name: The trial's training job.
        status: A :class:`TrialState`: ``running``, ``completed``, ``pruned``,
            ``failed`` or ``stopped``.
        hyperparameters: The tuned values, as strings.
        objective: The objective's final value, if the trial reported one.
        started: Start time (seconds since the epoch).
        ended: End time.
        failure_reason: Why the trial failed.
        epochs: Epochs the trial's job trained.
        note: Why it ended as it did, where that needs saying: the epoch and
            the rule that pruned it, or a verdict that came too late to apply.
    """

    job_name: str
    status: TrialState
    hyperparameters: dict[str, str] = field(default_factory=dict)
    objective: float | None = None
    started: float | None = None
    ended: float | None = None
    failure_reason: str | None = None
    epochs: int | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialState(self.status))
