"""SageMaker training jobs: requests, uploads, status, CloudWatch logs and outputs."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sm_imgclf.backends.sagemaker import training as sagemaker_training
from sm_imgclf.backends.sagemaker.capacity import check_fits, reader
from sm_imgclf.backends.sagemaker.clients import SageMakerClients
from sm_imgclf.backends.sagemaker.errors import already_exists, translate_errors
from sm_imgclf.backends.sagemaker.images import pytorch_image
from sm_imgclf.contracts.costs import capped
from sm_imgclf.contracts.status import JobState, JobStatus
from sm_imgclf.contracts.storage import UploadItem
from sm_imgclf.contracts.tracking import tracking_requirements
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.errors import BackendError, StorageError
from sm_imgclf.runtime.sources import resolve
from sm_imgclf.runtime.weights import kind_of

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class TrainingJobs:
    """Training jobs on SageMaker, through the backend's clients."""

    def __init__(self, aws: SageMakerClients) -> None:
        self.aws = aws
        self._finals: dict[str, dict[str, float]] = {}  # ended jobs' final metrics: never change
        self._hosts: dict[str, int] = {}  # each described job's instance count: its streams

    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """The validated ``CreateTrainingJob`` request for ``spec`` (nothing is sent)."""
        spec, uploads = self.artifacts(spec)
        return self.request(spec, next(iter(uploads)))

    def artifacts(self, spec: TrainingSpec) -> tuple[TrainingSpec, dict[str, bytes | Path]]:
        """The spec as the job will see it, and the objects it needs: source tarball first.

        A local weights file goes to the bucket under a key named by its content
        and reaches the job as an ``s3://`` weights channel.
        """
        found = resolve(spec.model, spec.source_dir)
        # AWS's PyTorch images have no Optuna; a search in one job installs it.
        wanted = (
            *found.requirements,
            *([f"optuna=={version('optuna')}"] if spec.search else []),
            *tracking_requirements(dict(spec.environment)),
        )
        source = sagemaker_training.source_tarball(spec.source_dir, wanted)
        uploads: dict[str, bytes | Path] = {sagemaker_training.source_key(source): source}
        if kind_of(spec.weights) == "file":
            path = Path(spec.weights)
            key = sagemaker_training.weights_key(path)
            uploads[key] = path
            spec = replace(spec, weights=self.aws.store.uri(key))
        return spec, uploads

    def request(self, spec: TrainingSpec, source_key: str) -> dict[str, Any]:
        """The checked ``CreateTrainingJob`` request, its source tarball at ``source_key``."""
        if spec.max_cost is not None:
            spec, _ = capped(spec, self.aws.prices.price(spec.instance_type, "training"))
        spec = replace(spec, role=self.aws.role_arn(spec.role))
        request = sagemaker_training.training_request(
            spec,
            bucket=self.aws.bucket,
            region=self.aws.region_name,
            image_uri=pytorch_image(
                spec.image_uri,
                scope="training",
                region=self.aws.region_name,
                instance_type=spec.instance_type,
            ),
            source_uri=self.aws.store.uri(source_key),
        )
        return self.aws.checked("CreateTrainingJob", request)

    def start_training(self, spec: TrainingSpec) -> None:
        """Upload the source tarball (and weights) if not there yet, then create the job."""
        spec, uploads = self.artifacts(spec)
        request = self.request(spec, next(iter(uploads)))
        sharded = check_fits(spec, reader(self.aws.s3_client))
        if sharded:
            sagemaker_training.stream_channels(request["InputDataConfig"], sharded)
            request = self.aws.checked("CreateTrainingJob", request)
        self.aws.check_quota(
            spec.instance_type,
            "spot training job usage" if spec.use_spot else "training job usage",
            spec.instance_count,
        )
        self.upload(uploads)
        try:
            with translate_errors("CreateTrainingJob", spec.job_name):
                self.aws.sagemaker_client.create_training_job(**request)
        except BackendError as error:
            self._adopt(request, error)

    def _adopt(self, request: dict[str, Any], error: BackendError) -> None:
        """Carry on with a job that exists already if it is the one ``request`` describes.

        A create retried after its answer was lost meets its own job; a name
        someone else used is an error that says so.
        """
        name = request["TrainingJobName"]
        if not already_exists(error):
            raise error
        with translate_errors("DescribeTrainingJob", name):
            found = self.aws.sagemaker_client.describe_training_job(TrainingJobName=name)
        # The service echoes defaults the request left out (CompressionType ...): only
        # what the request set is compared.
        fields = ("RoleArn", "InputDataConfig", "OutputDataConfig", "AlgorithmSpecification")
        same = found.get("HyperParameters") == request.get("HyperParameters") and all(
            holds(found.get(f), request[f]) for f in fields if f in request
        )
        if not same:
            raise BackendError(
                f"A training job named {name!r} exists already with other "
                "settings. Choose another job_name.",
                name=name,
            ) from error

    def describe_training(self, name: str) -> JobStatus:
        """Map ``DescribeTrainingJob`` onto :class:`~sm_imgclf.JobStatus`."""
        with translate_errors("DescribeTrainingJob", name):
            answer = self.aws.sagemaker_client.describe_training_job(TrainingJobName=name)
        self._hosts[name] = int(answer.get("ResourceConfig", {}).get("InstanceCount", 1))
        return JobStatus(
            JobState(answer["TrainingJobStatus"]),
            answer.get("FailureReason"),
            answer.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
            answer.get("SecondaryStatus"),
        )

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """Read new CloudWatch log events of every host's stream.

        The streams are listed (``DescribeLogStreams``, a call CloudWatch allows
        a few times a second per account) until every host has one, and again
        only after a pull that brought nothing, when a restarted host may have
        opened a new one.
        """
        tokens: dict[str, str | None] = dict((cursor or {}).get("tokens", {}))
        if len(tokens) < self._hosts.get(name, 1) or (cursor or {}).get("quiet", True):
            streams = self._log_streams(name)
            if streams is None:
                return [], cursor  # no log group until the first job writes to it
            for stream in streams:
                tokens.setdefault(stream, None)
        lines: list[str] = []
        for stream in sorted(tokens):
            args = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if tokens[stream]:
                args["nextToken"] = tokens[stream]
            with translate_errors("GetLogEvents", name):
                page = self.aws.logs_client.get_log_events(**args)
            lines += [event["message"] for event in page["events"]]
            tokens[stream] = page["nextForwardToken"]
        return lines, {"tokens": tokens, "quiet": not lines}

    def _log_streams(self, name: str) -> list[str] | None:
        logs = self.aws.logs_client
        try:
            with translate_errors("DescribeLogStreams", name):
                answer = logs.describe_log_streams(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/"
                )
        except BackendError as error:
            if isinstance(error.__cause__, logs.exceptions.ResourceNotFoundException):
                return None
            raise
        return [s["logStreamName"] for s in answer["logStreams"]]

    def training_output(self, name: str, target: Path) -> Path:
        """Download the job's ``output.tar.gz`` (SageMaker writes it when the job ends)."""
        key = f"jobs/{name}/output/output.tar.gz"
        try:
            return self.aws.store.get_file(key, target / "output.tar.gz")
        except StorageError as error:
            raise BackendError(
                f"Job {name!r} has no output archive at {self.aws.store.uri(key)} "
                "yet; SageMaker writes it when the job ends.",
                name=name,
            ) from error

    def fetch_model(self, uri: str, target: Path) -> Path:
        """Download the ``model.tar.gz`` at an ``s3://`` URI into ``target``."""
        from sm_imgclf.storage.s3 import S3Store

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not key:
            raise BackendError(f"Expected the s3:// URI of a model package; got {uri!r}.")
        store = self.aws.store if bucket == self.aws.bucket else S3Store(self.aws.s3_client, bucket)
        try:
            return store.get_file(key, target / "model.tar.gz")
        except StorageError as error:
            raise BackendError(f"Cannot fetch the model package {uri}: {error}") from error

    def stop_training(self, name: str) -> None:
        """Call ``StopTrainingJob`` on a running job; SageMaker keeps the checkpoints in S3.

        A job that already ended is left alone (the service refuses to stop it).
        """
        try:
            with translate_errors("StopTrainingJob", name):
                self.aws.sagemaker_client.stop_training_job(TrainingJobName=name)
        except BackendError:
            if not self.describe_training(name).status.terminal:
                raise

    def upload(self, uploads: dict[str, bytes | Path]) -> None:
        """Put each object the job needs that the bucket lacks (keys name their content)."""
        self.aws.store.check_access()
        self.aws.check_bucket_region()
        for key, data in uploads.items():
            if key in self.aws.store.list_objects(key):
                continue
            if isinstance(data, bytes):
                self.aws.store.put_bytes(key, data)
            else:
                self.aws.store.put_file(UploadItem(data, key, data.stat().st_size), lambda _: None)

    def whole_log(self, name: str) -> list[str]:
        """Every log line of the job so far, of all its hosts."""
        lines: list[str] = []
        cursor = None
        while True:
            found, cursor = self.training_log(name, cursor)
            if not found:
                return lines
            lines += found

    def final_metrics(self, name: str) -> dict[str, float]:
        """An ended job's ``FinalMetricDataList``: each metric's last value.

        Its ``epoch`` is how many epochs it trained; its ``best:*`` metrics are
        the packaged epoch's.
        """
        if name not in self._finals:
            with translate_errors("DescribeTrainingJob", name):
                answer = self.aws.sagemaker_client.describe_training_job(TrainingJobName=name)
            self._finals[name] = {
                m["MetricName"]: m["Value"] for m in answer.get("FinalMetricDataList", [])
            }
        return self._finals[name]

    def list_jobs(self) -> list[dict[str, Any]]:
        """The 100 newest training jobs with their status."""
        with translate_errors("ListTrainingJobs", "jobs"):
            page = self.aws.sagemaker_client.list_training_jobs(
                SortBy="CreationTime", SortOrder="Descending", MaxResults=100
            )
        return [
            {"name": j["TrainingJobName"], "status": j["TrainingJobStatus"]}
            for j in page["TrainingJobSummaries"]
        ]


def holds(found: Any, sent: Any) -> bool:
    """Whether a description ``found`` holds every value of the request part ``sent``."""
    if isinstance(sent, dict):
        return isinstance(found, dict) and all(
            key in found and holds(found[key], value) for key, value in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(found, list)
            and len(found) == len(sent)
            and all(holds(f, s) for f, s in zip(found, sent, strict=True))
        )
    return bool(found == sent)
