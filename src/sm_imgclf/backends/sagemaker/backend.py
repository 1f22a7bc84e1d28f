"""The SageMaker backend: S3 for storage, the SageMaker service API through boto3.

It is composed, not inherited: :class:`SageMakerClients` makes the AWS clients,
and three parts send the requests pure functions build (``training``,
``tuning`` and ``serving``) through them: :class:`TrainingJobs`,
:class:`TuningRuns` and :class:`Endpoints`. The backend answers the
``Backend`` protocol by handing each call to its part.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.backends import speeds
from sm_imgclf.backends.sagemaker import resources
from sm_imgclf.backends.sagemaker.clients import SageMakerClients
from sm_imgclf.backends.sagemaker.endpoints import Endpoints
from sm_imgclf.backends.sagemaker.jobs import LOG_GROUP, TrainingJobs
from sm_imgclf.backends.sagemaker.tuning_runs import TuningRuns
from sm_imgclf.contracts.costs import CostEstimate, estimate_for
from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
from sm_imgclf.contracts.resources import ENDPOINT, Resource
from sm_imgclf.contracts.status import JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import TuningSpec
from sm_imgclf.storage.s3 import S3Store

if TYPE_CHECKING:
    import boto3

__all__ = ["LOG_GROUP", "SageMakerBackend"]


class SageMakerBackend:
    """Runs training, tuning and serving on SageMaker, keeping data in an S3 bucket.

    Clients are created on first use; the arguments are those of
    :class:`~sm_imgclf.backends.sagemaker.clients.SageMakerClients`, which
    ``aws`` holds.
    """

    name = "sagemaker"
    stop_on_interrupt = False
    min_poll_seconds = 5.0
    costly_job_starts = True
    shares_features_by_job = True

    def __init__(
        self,
        bucket: str | None = None,
        *,
        region: str | None = None,
        boto_session: boto3.Session | None = None,
        endpoint_urls: Mapping[str, str] | None = None,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.aws = SageMakerClients(
            bucket,
            region=region,
            boto_session=boto_session,
            endpoint_urls=endpoint_urls,
            expected_bucket_owner=expected_bucket_owner,
            max_concurrency=max_concurrency,
            tags=tags,
        )
        self.jobs = TrainingJobs(self.aws)
        self.tuning = TuningRuns(self.aws, self.jobs)
        self.endpoints = Endpoints(self.aws)

    def __repr__(self) -> str:
        return repr(self.aws).replace("SageMakerClients", type(self).__name__, 1)

    @property
    def store(self) -> S3Store:
        """The S3 store under the session's bucket."""
        return self.aws.store

    # Training jobs
    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """The validated ``CreateTrainingJob`` request for ``spec`` (nothing is sent)."""
        return self.jobs.training_request(spec)

    def start_training(self, spec: TrainingSpec) -> None:
        """Upload what the job needs, then create it."""
        self.jobs.start_training(spec)

    def describe_training(self, name: str) -> JobStatus:
        """``DescribeTrainingJob`` as a :class:`~sm_imgclf.JobStatus`."""
        return self.jobs.describe_training(name)

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """New CloudWatch log lines of every host of the job."""
        return self.jobs.training_log(name, cursor)

    def training_output(self, name: str, target: Path) -> Path:
        """Download the job's ``output.tar.gz``."""
        return self.jobs.training_output(name, target)

    def fetch_model(self, uri: str, target: Path) -> Path:
        """Download the ``model.tar.gz`` at an ``s3://`` URI."""
        return self.jobs.fetch_model(uri, target)

    def stop_training(self, name: str) -> None:
        """``StopTrainingJob``; a job that already ended is left alone."""
        self.jobs.stop_training(name)

    def record_speed(self, spec: TrainingSpec, log: list[str], name: str) -> None:
        """Keep the speed in ``log`` of completed job ``name`` for later estimates."""
        speeds.record(self.name, spec, log, name)

    def list_jobs(self) -> list[dict[str, Any]]:
        """The 100 newest training jobs with their status."""
        return self.jobs.list_jobs()

    # Tuning runs
    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """The validated tuning (or one-job search) request (nothing is sent)."""
        return self.tuning.tuning_request(spec)

    def start_tuning(self, spec: TuningSpec) -> None:
        """Create the tuning job, or the one training job a search runs in."""
        self.tuning.start_tuning(spec)

    def describe_tuning(self, name: str) -> TuningStatus:
        """The run's status, whether a tuning job or a search in one job."""
        return self.tuning.describe_tuning(name)

    def list_trials(self, name: str) -> list[TrialRecord]:
        """Every trial of the run so far."""
        return self.tuning.list_trials(name)

    def stop_tuning(self, name: str) -> None:
        """Stop the run; SageMaker stops its running trials."""
        self.tuning.stop_tuning(name)

    # Endpoints and batch transforms
    def list_endpoints(self) -> list[dict[str, Any]]:
        """The 100 newest endpoints with their status."""
        return self.endpoints.list_endpoints()

    def deploy_requests(self, spec: DeploySpec) -> dict[str, dict[str, Any]]:
        """The validated CreateModel, CreateEndpointConfig and CreateEndpoint requests."""
        return self.endpoints.deploy_requests(spec)

    def schedule_request(self, spec: DeploySpec) -> dict[str, Any]:
        """The validated ``CreateSchedule`` request that deletes the endpoint in time."""
        return self.endpoints.schedule_request(spec)

    def deploy(self, spec: DeploySpec, *, poll: float = 15.0) -> None:
        """Create the model, config and endpoint, then wait for ``InService``."""
        self.endpoints.deploy(spec, poll=poll)

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """Status, failure reason and the largest request the endpoint takes."""
        return self.endpoints.describe_endpoint(name)

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """``InvokeEndpoint`` through the SageMaker runtime."""
        return self.endpoints.invoke(name, body, content_type, accept)

    def delete_endpoint(self, name: str) -> None:
        """Delete the endpoint, its config, its model and its deletion schedule."""
        self.endpoints.delete_endpoint(name)

    def batch_predict(self, spec: BatchSpec, *, poll: float = 30.0) -> str:
        """Run a batch transform to its end; return where the predictions are."""
        return self.endpoints.batch_predict(spec, poll=poll)

    # What costs money
    def list_resources(self) -> list[Resource]:
        """Endpoints up and training, tuning and transform jobs in progress, priced."""
        return resources.list_resources(self.aws.sagemaker_client, self.aws.prices)

    def remove_resource(self, resource: Resource) -> None:
        """Delete an endpoint with its config, models and schedule, or stop a job."""
        if resource.kind == ENDPOINT:
            self.endpoints.unschedule(resource.name)
        resources.remove(self.aws.sagemaker_client, resource)

    def estimate(self, spec: TrainingSpec | TuningSpec | DeploySpec | BatchSpec) -> CostEstimate:
        """What ``spec`` may cost at SageMaker's prices in this region."""
        return estimate_for(
            spec,
            self.aws.prices.price,
            speeds.expecter(self.name, speeds.image_counter(self.store)),
        )
