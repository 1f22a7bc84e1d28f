"""Trial: one trial of a tuning run, with typed hyperparameters and its training job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sm_imgclf.contracts.hyperparameters import BY_NAME
from sm_imgclf.contracts.status import TrialRecord
from sm_imgclf.errors import BackendError
from sm_imgclf.training.job import TrainingJob

if TYPE_CHECKING:
    from sm_imgclf.session import Session


@dataclass(frozen=True)
class Trial:
    """One trial of a tuning run.

    Attributes:
        job_name: Its training job.
        status: ``running``, ``completed``, ``pruned`` (stopped early by the
            strategy), ``failed`` or ``stopped``.
        hyperparameters: The tuned values, typed (``{"lr": 0.003, "batch_size": 64}``).
        objective: The objective's final value (for a pruned trial, its last report).
        duration: Seconds from start to end (``None`` while running).
        epochs: Epochs its job trained, where known.
        failure_reason: Why it failed.
        note: Why it ended as it did (the epoch and rule that pruned it ...).
    """

    job_name: str
    status: str
    hyperparameters: dict[str, Any]
    objective: float | None
    duration: float | None
    epochs: int | None
    failure_reason: str | None
    session: Session = field(repr=False, compare=False)
    note: str | None = None

    @property
    def job(self) -> TrainingJob:
        """The trial's :class:`~sm_imgclf.TrainingJob` (deploy it, read its metrics).

        A trial of a search run inside one job (``<job>/trial-<n>``) has the
        job as its own once the job has packaged it, as the best trial.

        Raises:
            BackendError: The trial ran inside a search's one job, which
                packaged another trial's model (or has not finished yet).
        """
        outer, inside, _ = self.job_name.partition("/")
        if inside and self.session.backend.describe_tuning(outer).best_job != self.job_name:
            raise BackendError(
                f"Trial {self.job_name!r} ran inside the training job {outer!r}, which "
                "packages only the best trial's model, once it has finished; use "
                "result.best.job.",
                name=outer,
            )
        return TrainingJob(outer if inside else self.job_name, self.session)

    @classmethod
    def from_record(cls, record: TrialRecord, session: Session) -> Trial:
        """Type a backend's record with the hyperparameter schema."""
        values = {
            name: BY_NAME[name].parse(text) if name in BY_NAME else text
            for name, text in record.hyperparameters.items()
        }
        duration = (
            record.ended - record.started
            if record.ended is not None and record.started is not None
            else None
        )
        return cls(
            record.job_name,
            record.status,
            values,
            record.objective,
            duration,
            record.epochs,
            record.failure_reason,
            session,
            record.note,
        )
