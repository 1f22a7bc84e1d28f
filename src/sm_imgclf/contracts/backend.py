"""The Backend protocol every backend implements."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sm_imgclf.contracts.costs import CostEstimate
from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
from sm_imgclf.contracts.resources import Resource
from sm_imgclf.contracts.status import JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.storage import Store
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import TuningSpec


@runtime_checkable
class Backend(Protocol):
    """Where a session's work is stored and executed.

    Every method takes or names plain data (a frozen spec, a job name), so the
    public classes stay the same whichever backend runs the work.

    Attributes:
        name: A short name for messages and logs (``"local"``, ``"sagemaker"``, ``"fake"``).
        stop_on_interrupt: Whether Ctrl-C while waiting stops the job by default
            (local work: yes; paid cloud work keeps running, and the caller is
            told how to re-attach or stop it).
        min_poll_seconds: The shortest wait between looks at a job or run
            (0 locally; SageMaker limits how often it may be asked).
        costly_job_starts: Whether starting a job costs minutes of paid instance
            time (SageMaker: yes), so a head-only search is best run inside one
            job by default rather than as one job per trial.
        shares_features_by_job: Whether trials can share backbone features only
            through a features job run first (SageMaker); where ``False``, trials
            already share them through the session's own feature store.
    """

    name: str
    stop_on_interrupt: bool
    min_poll_seconds: float
    costly_job_starts: bool
    shares_features_by_job: bool

    @property
    def store(self) -> Store:
        """The store that holds datasets, job outputs and model packages."""
        ...

    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """Return what :meth:`start_training` would send or run, without doing it."""
        ...

    def start_training(self, spec: TrainingSpec) -> None:
        """Start the job described by ``spec``; return without waiting."""
        ...

    def describe_training(self, name: str) -> JobStatus:
        """Return a job's status; raise :class:`~sm_imgclf.BackendError` if unknown."""
        ...

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """Return log lines after ``cursor`` (``None``: from the start) and the new cursor."""
        ...

    def training_output(self, name: str, target: Path) -> Path:
        """Return a local copy of a job's output data (a folder, or an archive in ``target``).

        Raises:
            BackendError: The job has no output yet.
        """
        ...

    def fetch_model(self, uri: str, target: Path) -> Path:
        """Return a local copy of the model package at ``uri`` (downloaded into ``target``).

        Raises:
            BackendError: There is no package at ``uri``, or this backend cannot reach it.
        """
        ...

    def stop_training(self, name: str) -> None:
        """Stop a running job; its checkpoints are kept."""
        ...

    def record_speed(self, spec: TrainingSpec, log: list[str], name: str) -> None:
        """Keep how fast the completed job ``name`` trained, read from its ``log``.

        Later estimates of jobs like ``spec`` on this backend then expect a time.
        """
        ...

    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """Return what :meth:`start_tuning` would send or run, without doing it."""
        ...

    def start_tuning(self, spec: TuningSpec) -> None:
        """Start the tuning run described by ``spec``; return without waiting."""
        ...

    def describe_tuning(self, name: str) -> TuningStatus:
        """Return a tuning run's status; raise :class:`~sm_imgclf.BackendError` if unknown."""
        ...

    def list_trials(self, name: str) -> list[TrialRecord]:
        """Return every trial of a tuning run so far, in the order they started."""
        ...

    def stop_tuning(self, name: str) -> None:
        """Stop a tuning run and its running trials."""
        ...

    def list_jobs(self) -> list[dict[str, Any]]:
        """Return recent training jobs as ``{"name", "status"}``, newest first."""
        ...

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Return endpoints as ``{"name", "status"}``."""
        ...

    def deploy(self, spec: DeploySpec) -> None:
        """Create the endpoint ``spec`` describes and wait until it serves."""
        ...

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """Return an endpoint's state (``status`` at least); raise if unknown."""
        ...

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """Send one request; raise :class:`~sm_imgclf.EndpointError` on a refusal."""
        ...

    def delete_endpoint(self, name: str) -> None:
        """Delete the endpoint and what was created for it."""
        ...

    def list_resources(self) -> list[Resource]:
        """What costs money now: endpoints up, training, tuning and transform jobs running."""
        ...

    def remove_resource(self, resource: Resource) -> None:
        """Delete an endpoint (with its config and models) or stop a job."""
        ...

    def estimate(self, spec: TrainingSpec | TuningSpec | DeploySpec | BatchSpec) -> CostEstimate:
        """What the work ``spec`` describes may cost, before it starts."""
        ...

    def batch_predict(self, spec: BatchSpec) -> str:
        """Score every image under ``spec.input_uri``; return where the predictions are."""
        ...
