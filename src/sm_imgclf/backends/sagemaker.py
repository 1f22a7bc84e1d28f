"""The SageMaker backend: S3 for storage, the SageMaker service API through boto3."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._version import __version__
from sm_imgclf.backends import sagemaker_serving, sagemaker_training, sagemaker_tuning
from sm_imgclf.backends.sagemaker_images import pytorch_image
from sm_imgclf.contracts.deploy import (
    PAYLOAD_LIMIT,
    SERVERLESS_PAYLOAD_LIMIT,
    BatchSpec,
    DeploySpec,
)
from sm_imgclf.contracts.status import JobState, JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import TuningSpec
from sm_imgclf.errors import BackendError, EndpointError, StorageError
from sm_imgclf.storage.s3 import S3Store

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class SageMakerBackend:
    """Stores data in an S3 bucket; clients are created on first use.

    Args:
        bucket: The bucket for datasets, job outputs and models.
        region: AWS region; defaults to the boto3 session's.
        boto_session: A ready ``boto3.Session`` (credentials, profile); one is
            made from the environment when omitted.
        endpoint_urls: Endpoint URL by service name (``s3``, ``sagemaker``, ``logs``),
            for S3-compatible stores, VPC endpoints or test servers.
        expected_bucket_owner: Account id the bucket must belong to.
        max_concurrency: Files sent at once.
    """

    name = "sagemaker"
    stop_on_interrupt = False

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        boto_session: boto3.Session | None = None,
        endpoint_urls: Mapping[str, str] | None = None,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self._boto_session = boto_session
        self.endpoint_urls = dict(endpoint_urls or {})
        self.expected_bucket_owner = expected_bucket_owner
        self.max_concurrency = max_concurrency
        self._epochs: dict[str, int | None] = {}  # of ended jobs, which never change
        self._tuning_configs: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"SageMakerBackend(bucket={self.bucket!r}, region={self.region!r})"

    @cached_property
    def boto_session(self) -> boto3.Session:
        """The boto3 session, made from the environment if none was given."""
        if self._boto_session is not None:
            return self._boto_session
        import boto3

        return boto3.Session(region_name=self.region)

    def client_config(self, pool: int) -> Any:
        """Return the botocore config shared by our clients: standard retries, a pool size."""
        from botocore.config import Config

        return Config(
            retries={"mode": "standard", "total_max_attempts": 10},
            max_pool_connections=pool,
            user_agent_extra=f"sm-imgclf/{__version__}",
        )

    @cached_property
    def s3_client(self) -> S3Client:
        """The S3 client, sized for :attr:`max_concurrency` parallel transfers."""
        return self.boto_session.client(
            "s3",
            region_name=self.region or self.boto_session.region_name,
            endpoint_url=self.endpoint_urls.get("s3"),
            config=self.client_config(pool=self.max_concurrency * 4),
        )

    @cached_property
    def store(self) -> S3Store:
        """The S3 store for :attr:`bucket`."""
        return S3Store(
            self.s3_client,
            self.bucket,
            expected_bucket_owner=self.expected_bucket_owner,
            max_concurrency=self.max_concurrency,
        )

    @property
    def region_name(self) -> str:
        """The region of the clients."""
        region = self.region or self.boto_session.region_name
        if not region:
            from sm_imgclf._params import bad_value

            raise bad_value("region", "an AWS region such as 'us-east-1'", region,
                            "Pass region= to SageMakerSession or set AWS_DEFAULT_REGION.")
        return str(region)

    def client(self, service: str) -> Any:
        """Return a client for ``service`` with the shared retry configuration."""
        session: Any = self.boto_session  # boto3's stubs overload client() per service name
        return session.client(
            service, region_name=self.region_name, endpoint_url=self.endpoint_urls.get(service),
            config=self.client_config(pool=10))

    @cached_property
    def sagemaker_client(self) -> Any:
        """The SageMaker client."""
        return self.client("sagemaker")

    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """The validated ``CreateTrainingJob`` request for ``spec`` (nothing is sent)."""
        source = sagemaker_training.source_tarball()
        return self._request(spec, sagemaker_training.source_key(source))

    def _request(self, spec: TrainingSpec, source_key: str) -> dict[str, Any]:
        request = sagemaker_training.training_request(
            spec, bucket=self.bucket, region=self.region_name,
            image_uri=pytorch_image(spec.image_uri, scope="training", region=self.region_name,
                                    instance_type=spec.instance_type),
            source_uri=self.store.uri(source_key))
        sagemaker_training.validate_request(self.sagemaker_client, "CreateTrainingJob", request)
        return request

    def start_training(self, spec: TrainingSpec) -> None:
        """Upload the source tarball if it is not there yet, then create the job."""
        source = sagemaker_training.source_tarball()
        key = sagemaker_training.source_key(source)
        request = self._request(spec, key)
        self._upload_source(key, source)
        with _translate("CreateTrainingJob", spec.job_name):
            self.sagemaker_client.create_training_job(**request)

    def describe_training(self, name: str) -> JobStatus:
        """Map ``DescribeTrainingJob`` onto :class:`~sm_imgclf.JobStatus`."""
        with _translate("DescribeTrainingJob", name):
            answer = self.sagemaker_client.describe_training_job(TrainingJobName=name)
        return JobStatus(JobState(answer["TrainingJobStatus"]), answer.get("FailureReason"),
                         answer.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
                         answer.get("SecondaryStatus"))

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """Read new CloudWatch log events of every host's stream."""
        logs = self.logs_client
        tokens: dict[str, str | None] = dict(cursor or {})
        lines: list[str] = []
        try:
            streams = logs.describe_log_streams(logGroupName=LOG_GROUP,
                                                logStreamNamePrefix=f"{name}/")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return [], tokens  # no log group until the first job writes to it
        for stream in sorted(s["logStreamName"] for s in streams):
            args = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if tokens.get(stream):
                args["nextToken"] = tokens[stream]
            page = logs.get_log_events(**args)
            lines += [event["message"] for event in page["events"]]
            tokens[stream] = page["nextForwardToken"]
        return lines, tokens

    @cached_property
    def logs_client(self) -> Any:
        """The CloudWatch Logs client."""
        return self.client("logs")

    def training_output(self, name: str, target: Path) -> Path:
        """Download the job's ``output.tar.gz`` (SageMaker writes it when the job ends)."""
        key = f"jobs/{name}/output/output.tar.gz"
        try:
            return self.store.get_file(key, target / "output.tar.gz")
        except StorageError as error:
            raise BackendError(f"Job {name!r} has no output archive at {self.store.uri(key)} "
                               "yet; SageMaker writes it when the job ends.", name=name) from error

    def stop_training(self, name: str) -> None:
        """Call ``StopTrainingJob`` on a running job; SageMaker keeps the checkpoints in S3.

        A job that already ended is left alone (the service refuses to stop it).
        """
        try:
            with _translate("StopTrainingJob", name):
                self.sagemaker_client.stop_training_job(TrainingJobName=name)
        except BackendError:
            if not self.describe_training(name).status.terminal:
                raise


    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """The validated ``CreateHyperParameterTuningJob`` request (nothing is sent)."""
        source = sagemaker_training.source_tarball()
        return self._tuning_request(spec, sagemaker_training.source_key(source))

    def _tuning_request(self, spec: TuningSpec, source_key: str) -> dict[str, Any]:
        request = sagemaker_tuning.tuning_request(spec, self._request(spec.training, source_key))
        sagemaker_training.validate_request(self.sagemaker_client, "CreateHyperParameterTuningJob",
                                  request)
        return request

    def start_tuning(self, spec: TuningSpec) -> None:
        """Upload the source tarball if needed, then create the tuning job."""
        source = sagemaker_training.source_tarball()
        key = sagemaker_training.source_key(source)
        request = self._tuning_request(spec, key)
        self._upload_source(key, source)
        with _translate("CreateHyperParameterTuningJob", spec.name):
            self.sagemaker_client.create_hyper_parameter_tuning_job(**request)

    def _upload_source(self, key: str, source: bytes) -> None:
        self.store.check_access()
        if key not in self.store.list_objects(key):
            self.store.put_bytes(key, source)

    def _describe_tuning(self, name: str) -> dict[str, Any]:
        with _translate("DescribeHyperParameterTuningJob", name):
            answer: dict[str, Any] = self.sagemaker_client.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name)
        # A run's configuration never changes: list_trials reads it from here.
        self._tuning_configs[name] = answer["HyperParameterTuningJobConfig"]
        return answer

    def describe_tuning(self, name: str) -> TuningStatus:
        """Map ``DescribeHyperParameterTuningJob`` onto :class:`TuningStatus`."""
        answer = self._describe_tuning(name)
        config = answer["HyperParameterTuningJobConfig"]
        objective = config["HyperParameterTuningJobObjective"]
        categories = config.get("ParameterRanges", {}).get("CategoricalParameterRanges", [])
        return TuningStatus(
            JobState(answer["HyperParameterTuningJobStatus"]), answer.get("FailureReason"),
            answer.get("BestTrainingJob", {}).get("TrainingJobName"), objective["MetricName"],
            "maximize" if objective["Type"] == "Maximize" else "minimize",
            tuple(r["Name"] for r in categories))

    def list_trials(self, name: str) -> list[TrialRecord]:
        """Every trial, through ``ListTrainingJobsForHyperParameterTuningJob``'s pages."""
        config = self._tuning_configs.get(name) or self._describe_tuning(name)[
            "HyperParameterTuningJobConfig"]
        early = (config.get("TrainingJobEarlyStoppingType") == "Auto"
                 or config.get("Strategy") == "Hyperband")
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100,
                                    "SortBy": "CreationTime", "SortOrder": "Ascending"}
            if token:
                args["NextToken"] = token
            with _translate("ListTrainingJobsForHyperParameterTuningJob", name):
                page = self.sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
                    **args)
            summaries += page["TrainingJobSummaries"]
            token = page.get("NextToken")
            if not token:
                break
        records = [sagemaker_tuning.trial_record(s, early) for s in summaries]
        return [replace(r, epochs=self._trained_epochs(r.job_name))
                if r.status.terminal else r for r in records]

    def _trained_epochs(self, name: str) -> int | None:
        """The final value of a job's ``epoch`` metric: how many epochs it trained."""
        if name not in self._epochs:
            with _translate("DescribeTrainingJob", name):
                answer = self.sagemaker_client.describe_training_job(TrainingJobName=name)
            final = {m["MetricName"]: m["Value"] for m in answer.get("FinalMetricDataList", [])}
            self._epochs[name] = int(final["epoch"]) if "epoch" in final else None
        return self._epochs[name]

    def stop_tuning(self, name: str) -> None:
        """Call ``StopHyperParameterTuningJob``; SageMaker stops its running trials.

        A run that already ended is left alone (the service refuses to stop it).
        """
        try:
            with _translate("StopHyperParameterTuningJob", name):
                self.sagemaker_client.stop_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=name)
        except BackendError:
            if not self.describe_tuning(name).status.terminal:
                raise

    def list_jobs(self) -> list[dict[str, Any]]:
        """The 100 newest training jobs with their status."""
        with _translate("ListTrainingJobs", "jobs"):
            page = self.sagemaker_client.list_training_jobs(
                SortBy="CreationTime", SortOrder="Descending", MaxResults=100)
        return [{"name": j["TrainingJobName"], "status": j["TrainingJobStatus"]}
                for j in page["TrainingJobSummaries"]]

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The 100 newest endpoints with their status."""
        with _translate("ListEndpoints", "endpoints"):
            page = self.sagemaker_client.list_endpoints(
                SortBy="CreationTime", SortOrder="Descending", MaxResults=100)
        return [{"name": e["EndpointName"], "status": e["EndpointStatus"]}
                for e in page["Endpoints"]]

    def deploy_requests(self, spec: DeploySpec) -> dict[str, dict[str, Any]]:
        """The validated CreateModel, CreateEndpointConfig and CreateEndpoint requests."""
        built = sagemaker_serving.deploy_requests(
            spec, region=self.region_name, image_uri=pytorch_image(
                spec.image_uri, scope="inference", region=self.region_name,
                instance_type=None if spec.serverless_memory_mb else spec.instance_type))
        for operation, request in built.items():
            sagemaker_training.validate_request(self.sagemaker_client, operation, request)
        return built

    def deploy(self, spec: DeploySpec, *, poll: float = 15.0) -> None:
        """Create the model, config and endpoint, then wait for ``InService``."""
        import time

        client = self.sagemaker_client
        calls = {"CreateModel": client.create_model,
                 "CreateEndpointConfig": client.create_endpoint_config,
                 "CreateEndpoint": client.create_endpoint}
        for operation, request in self.deploy_requests(spec).items():
            with _translate(operation, spec.endpoint_name):
                calls[operation](**request)
        while (state := self.describe_endpoint(spec.endpoint_name))["status"] not in (
                "InService", "Failed", "OutOfService"):
            time.sleep(poll)
        if state["status"] != "InService":
            raise BackendError(f"Endpoint {spec.endpoint_name!r} is {state['status']}: "
                               f"{state.get('failure_reason') or 'no reason given'}",
                               name=spec.endpoint_name)

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """``DescribeEndpoint``: status, failure reason and the largest request it takes.

        Serverless endpoints take 4 MB per request, instance endpoints 6 MB.
        """
        with _translate("DescribeEndpoint", name):
            answer = self.sagemaker_client.describe_endpoint(EndpointName=name)
        serverless = any("CurrentServerlessConfig" in v
                         for v in answer.get("ProductionVariants", []))
        return {"status": answer["EndpointStatus"], "failure_reason": answer.get("FailureReason"),
                "max_payload_bytes": SERVERLESS_PAYLOAD_LIMIT if serverless else PAYLOAD_LIMIT}

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """``InvokeEndpoint`` through the SageMaker runtime."""
        from botocore.exceptions import ClientError

        try:
            answer = self.runtime_client.invoke_endpoint(
                EndpointName=name, Body=body, ContentType=content_type, Accept=accept)
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            raise EndpointError(f"InvokeEndpoint {name!r} failed: {error}", status) from error
        return bytes(answer["Body"].read())

    @cached_property
    def runtime_client(self) -> Any:
        """The SageMaker runtime client."""
        return self.client("sagemaker-runtime")

    def delete_endpoint(self, name: str) -> None:
        """Delete the endpoint, its config and its model; missing pieces are skipped."""
        from botocore.exceptions import ClientError

        client = self.sagemaker_client
        for delete, key in ((client.delete_endpoint, "EndpointName"),
                            (client.delete_endpoint_config, "EndpointConfigName"),
                            (client.delete_model, "ModelName")):
            try:
                delete(**{key: name})
            except ClientError as error:
                if "Could not find" not in str(error) and "does not exist" not in str(error):
                    raise BackendError(f"Deleting {name!r} failed: {error}", name=name) from error


    def batch_predict(self, spec: BatchSpec, *, poll: float = 30.0) -> str:
        """Create the model and a batch transform job, wait for it, return the output URI.

        The model is deleted when the transform ends, whatever its outcome.
        """
        model = self.deploy_requests(DeploySpec(spec.name, spec.model_uri,
                                                image_uri=spec.image_uri, role=spec.role,
                                                instance_type=spec.instance_type)
                                     )["CreateModel"]
        transform = sagemaker_serving.transform_request(spec)
        sagemaker_training.validate_request(self.sagemaker_client, "CreateTransformJob", transform)
        with _translate("CreateModel", spec.name):
            self.sagemaker_client.create_model(**model)
        try:
            answer = self._transform(transform, poll)
        finally:  # the model exists only for this transform
            with _translate("DeleteModel", spec.name):
                self.sagemaker_client.delete_model(ModelName=spec.name)
        if answer["TransformJobStatus"] != "Completed":
            raise BackendError(f"Batch transform {spec.name!r} is {answer['TransformJobStatus']}"
                               f": {answer.get('FailureReason') or 'no reason given'}",
                               name=spec.name)
        return spec.output_uri

    def _transform(self, transform: dict[str, Any], poll: float) -> dict[str, Any]:
        """Create the transform job and wait until it ends; return its last description."""
        import time

        name = transform["TransformJobName"]
        with _translate("CreateTransformJob", name):
            self.sagemaker_client.create_transform_job(**transform)
        while True:
            with _translate("DescribeTransformJob", name):
                answer: dict[str, Any] = self.sagemaker_client.describe_transform_job(
                    TransformJobName=name)
            if JobState(answer["TransformJobStatus"]).terminal:
                return answer
            time.sleep(poll)


class _translate:
    """Turn botocore errors of a SageMaker call into :class:`~sm_imgclf.BackendError`."""

    def __init__(self, action: str, name: str) -> None:
        self.action, self.name = action, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError | BotoCoreError):
            raise BackendError(f"{self.action} for {self.name!r} failed: {error}",
                               name=self.name) from error
