"""The frozen plans of a deployment and of a batch prediction job."""

from __future__ import annotations

from dataclasses import dataclass

from sm_imgclf._params import bad_value, check_number, check_resource_name, parse_duration
from sm_imgclf.contracts.tags import check_user_tags

PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes in one request to an instance endpoint
SERVERLESS_PAYLOAD_LIMIT = 4 * 1024 * 1024  # ... and to a serverless one


@dataclass(frozen=True)
class DeploySpec:
    """What to serve and on what; built without I/O.

    Attributes:
        endpoint_name: Name of the endpoint (the model and config share it).
        model_uri: The model package (``model.tar.gz``).
        instance_type: SageMaker instance type (ignored locally).
        instance_count: Instances behind the endpoint.
        serverless_memory_mb: Serverless memory (1024-6144, steps of 1024) instead of instances.
        serverless_max_concurrency: Serverless concurrent invocations.
        image_uri: Inference container image; looked up when ``None``.
        role: IAM role ARN the SageMaker model runs as.
        max_batch: Images per forward pass in the local server.
        max_wait_ms: Milliseconds a request waits for others to batch with (local server).
        environment: Variables for the SageMaker serving container, over the
            ones the library sets for the instance type (TorchServe's
            ``SAGEMAKER_MODEL_SERVER_WORKERS``, ``OMP_NUM_THREADS`` ...).
        tags: Tags for the model, endpoint config and endpoint (a mapping or pairs).
        delete_after: Delete the endpoint this long after it is created
            (``"90m"``, ``"4h"``, ``"2d"``): on SageMaker an EventBridge
            Scheduler one-time schedule, locally a timer in the server.
        delete_role: The IAM role EventBridge Scheduler assumes to delete the
            endpoint (SageMaker only); by default the role named
            ``sm-imgclf-endpoint-deleter`` in the execution role's account.
    """

    endpoint_name: str
    model_uri: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int = 5
    image_uri: str | None = None
    role: str | None = None
    max_batch: int = 32
    max_wait_ms: float = 5.0
    environment: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    delete_after: str | None = None
    delete_role: str | None = None

    def __post_init__(self) -> None:
        check_resource_name("endpoint_name", self.endpoint_name)
        object.__setattr__(self, "tags", check_user_tags(self.tags))
        if self.delete_after is not None:
            parse_duration("delete_after", self.delete_after)
        pairs = dict(self.environment)
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in pairs.items()):
            raise bad_value("environment", "a mapping of variable names to strings",
                            self.environment)
        object.__setattr__(self, "environment", tuple(sorted(pairs.items())))
        check_number("instance_count", self.instance_count, low=1, integer=True)
        if self.serverless_memory_mb is not None and (
                self.serverless_memory_mb not in range(1024, 6145, 1024)):
            raise bad_value("serverless_memory_mb", "one of 1024, 2048, ... 6144",
                            self.serverless_memory_mb)
        check_number("max_batch", self.max_batch, low=1, integer=True)
        check_number("max_wait_ms", self.max_wait_ms, low=0.0)


@dataclass(frozen=True)
class BatchSpec:
    """A batch prediction job.

    Attributes:
        name: Job name (SageMaker transform job and model name).
        model_uri: The model package.
        input_uri: Folder (``file://``) or S3 prefix of the images.
        output_uri: Where predictions go.
        instance_type: SageMaker instance type.
        instance_count: SageMaker instances.
        top_k: Classes per image.
        image_uri: Inference image (looked up when ``None``).
        role: IAM role ARN for SageMaker.
        tags: Tags for the transform job and its model.
    """

    name: str
    model_uri: str
    input_uri: str
    output_uri: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    top_k: int = 5
    image_uri: str | None = None
    role: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_resource_name("name", self.name)
        object.__setattr__(self, "tags", check_user_tags(self.tags))
        check_number("instance_count", self.instance_count, low=1, integer=True)
        check_number("top_k", self.top_k, low=1, integer=True)
