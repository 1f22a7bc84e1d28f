"""MLflow tracking: where a session's jobs log, and the parent run of a tuning run.

Tracking is on when the session has a ``tracking_uri`` or ``MLFLOW_TRACKING_URI``
is set; nothing here imports MLflow until then. Each training job creates and
fills its own run from inside the job (:mod:`sm_imgclf.runtime.job.tracking`),
so its epochs appear while it runs, wherever it runs; this side only tells it
where, and holds a tuning run's parent run.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value
from sm_imgclf.contracts.tracking import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_ENV,
    REMOTE_SCHEMES,
    URI_ENV,
)

if TYPE_CHECKING:
    from sm_imgclf.session import Session

logger = logging.getLogger(__name__)


def tracking_uri(session: Session) -> str | None:
    """The tracking URI the session's jobs log to, ``None`` when tracking is off."""
    return session.tracking_uri or os.environ.get(URI_ENV) or None


def experiment_name() -> str:
    """The MLflow experiment runs go to: ``MLFLOW_EXPERIMENT_NAME``, else ``sm-imgclf``."""
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def job_environment(session: Session) -> tuple[tuple[str, str], ...]:
    """The variables that make a job log to the session's tracking server (none when off).

    Raises:
        ConfigurationError: A SageMaker job was given a local store (a folder or
            SQLite file on this machine), which it cannot reach.
    """
    uri = tracking_uri(session)
    if uri is None:
        return ()
    if session.backend.name == "sagemaker" and not uri.startswith(REMOTE_SCHEMES):
        raise bad_value(
            "tracking_uri",
            "a tracking server a SageMaker job can reach (https://... or a SageMaker "
            "managed MLflow tracking server's ARN)",
            uri,
            "A local store is on this machine only: use it with LocalSession.",
        )
    # The run is named after the job: SageMaker's TRAINING_JOB_NAME, or RUN_NAME_ENV
    # that the local backend sets, so a tuning run's trials each name their own.
    return ((URI_ENV, uri), (EXPERIMENT_ENV, experiment_name()))


class ParentRun:
    """The run a tuning run's trials log under, as its children.

    Args:
        uri: The tracking URI.
        name: The tuning run's name (the parent run's name).
        params: What the run searches, logged as the parent's parameters.
    """

    def __init__(self, uri: str, name: str, params: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        from sm_imgclf.runtime.job.tracking import experiment_id_of

        self.client: Any = MlflowClient(uri)
        experiment = experiment_id_of(self.client, experiment_name())
        tags = {"sm_imgclf.kind": "tuning", "sm_imgclf.tuning_run": name}
        self.run_id: str = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value[:6000])
        self.experiment = experiment

    def tag_trial(self, job_name: str, key: str, value: str) -> None:
        """Tag the child run of the trial ``job_name`` (a pruned trial's reason)."""
        runs = self.client.search_runs(
            [self.experiment],
            f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.run_name = '{job_name}'",
        )
        for run in runs:
            self.client.set_tag(run.info.run_id, key, value)

    def end(self, status: str, best: str | None) -> None:
        """Close the parent run: ``FINISHED``, ``FAILED`` or ``KILLED``, naming the best trial."""
        if best:
            self.client.set_tag(self.run_id, "sm_imgclf.best_trial", best)
        self.client.set_terminated(self.run_id, status)


def start_parent(session: Session, name: str, space: dict[str, str]) -> ParentRun | None:
    """The parent run of a tuning run when the session tracks; ``None`` when off or out of reach.

    A tracking server that does not answer costs a warning, never the run.
    """
    uri = tracking_uri(session)
    if uri is None:
        return None
    try:
        return ParentRun(uri, name, space)
    except Exception as error:  # whatever the server or MLflow raised
        logger.warning("tracking: MLflow at %s failed (%s); the tuning run goes on", uri, error)
        return None


def end_parent(parent: ParentRun, trials: list[Any], best: str | None) -> None:
    """Tag every trial's run with its state and note, then end the parent run."""
    try:
        for trial in trials:
            parent.tag_trial(trial.job_name, "sm_imgclf.trial_state", str(trial.status))
            if trial.note:
                parent.tag_trial(trial.job_name, "sm_imgclf.note", trial.note)
        done = any(str(trial.status) == "completed" for trial in trials)
        parent.end("FINISHED" if done else "FAILED", best)
    except Exception as error:  # the trials ran: only their record is incomplete
        logger.warning("tracking: could not close the tuning run's MLflow run (%s)", error)
