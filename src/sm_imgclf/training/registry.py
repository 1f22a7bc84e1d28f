"""MLflow's model registry: a tracked job's package as a named version, deployed by name.

A version's source is the job's run (``runs:/<run>/model``, the package it
logged); the version is tagged with the job's name and ``model.tar.gz``, so
deploying it deploys that job, on the session it ran on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value
from sm_imgclf.errors import BackendError, ConfigurationError
from sm_imgclf.training.tracking import tracking_uri

if TYPE_CHECKING:
    from sm_imgclf.session import Session

JOB_TAG = "sm_imgclf.job"
MODEL_URI_TAG = "sm_imgclf.model_uri"
ENDPOINT_TAG = "registered-model"  # on the endpoint: the version it serves, name:version


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model.

    Attributes:
        name: The registered model's name.
        version: Its version number.
        job_name: The training job whose package it is.
        run_id: The job's MLflow run.
    """

    name: str
    version: int
    job_name: str
    run_id: str

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def register(job: Any, name: str) -> RegisteredVersion:
    """Add ``job``'s package (a :class:`~sm_imgclf.TrainingJob`) to MLflow's registry as ``name``.

    Raises:
        ConfigurationError: The session does not track, or ``name`` is empty.
        BackendError: The job has no package, or no MLflow run (it ran untracked).
    """
    if not isinstance(name, str) or not name.strip():
        raise bad_value("name", "a registered model's name such as 'dog-breeds'", name)
    client = _client(job.session)
    if job.model_uri is None:
        raise BackendError(
            f"Job {job.name!r} has no model package (status {job.status}) to register.",
            name=job.name,
        )
    run_id = _run_of(client, job.name)
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
            raise
    tags = {JOB_TAG: job.name, MODEL_URI_TAG: job.model_uri}
    made = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    return RegisteredVersion(name, int(made.version), job.name, run_id)


def registered_version(session: Session, reference: str) -> RegisteredVersion:
    """The version ``"name:version"`` names, or the newest of ``"name"``.

    Raises:
        ConfigurationError: No such model or version in the session's registry.
    """
    name, _, wanted = str(reference).partition(":")
    client = _client(session)
    versions = client.search_model_versions(f"name = '{name}'")
    if wanted:
        versions = [v for v in versions if str(v.version) == wanted]
    if not versions:
        raise ConfigurationError(
            f"The registry at {tracking_uri(session)} has no "
            f"{'version ' + wanted + ' of ' if wanted else ''}model {name!r}. "
            "Register one with job.register(name)."
        )
    found = max(versions, key=lambda v: int(v.version))
    job_name = found.tags.get(JOB_TAG)
    if not job_name:
        raise ConfigurationError(
            f"{name}:{found.version} was not registered by sm-imgclf (no {JOB_TAG} tag)."
        )
    return RegisteredVersion(name, int(found.version), job_name, found.run_id)


def _client(session: Session) -> Any:
    uri = tracking_uri(session)
    if uri is None:
        raise ConfigurationError(
            "The model registry is MLflow's: give the session a tracking_uri (or set "
            "MLFLOW_TRACKING_URI) and run the job with it."
        )
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _run_of(client: Any, job_name: str) -> str:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"attributes.run_name = '{job_name}'", max_results=1)
    if not runs:
        raise BackendError(
            f"Job {job_name!r} has no MLflow run: it ran without tracking. Train it again "
            "with the session's tracking_uri set, then register it.",
            name=job_name,
        )
    return str(runs[0].info.run_id)
