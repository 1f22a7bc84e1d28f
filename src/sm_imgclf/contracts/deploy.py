"""The frozen plans of a deployment and of a batch prediction job."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sm_imgclf._params import (
    bad_value,
    check_choice,
    check_number,
    check_resource_name,
    parse_duration,
)
from sm_imgclf.contracts.tags import check_user_tags

PAYLOAD_LIMIT = 6 * 1024 * 1024  # bytes in one request to an instance endpoint
SERVERLESS_PAYLOAD_LIMIT = 4 * 1024 * 1024  # ... and to a serverless one
FORWARDS = ("auto", "eager", "channels_last", "onnxruntime", "autocast")
MAX_PIXELS = 40_000_000  # a larger image is refused before it is decoded
DEFAULT_TOP_K = 5  # classes in an answer, wherever nobody asked for another number


@dataclass(frozen=True, kw_only=True)
class DeployOptions:
    """Where and how an endpoint serves; every setting works the same on both backends.

    The serving program reads the container's settings (``top_k`` to
    ``max_pixels``) from its environment, which
    :meth:`~DeploySpec.container_environment` writes for the local server
    process and for the SageMaker model alike. Settings that only SageMaker has
    (instances, serverless, image, role) are ignored locally.

    Attributes:
        instance_type: SageMaker instance type.
        instance_count: Instances behind the endpoint.
        serverless_memory_mb: Serverless memory (1024-6144, steps of 1024) instead of instances.
        serverless_max_concurrency: Serverless concurrent invocations.
        image_uri: Inference container image: a full URI, a line by name
            (``"pytorch-inference:2.6"``, TorchServe, past its end of patch), or
            ``None`` for AWS's Ray Serve SageMaker image.
        role: IAM role ARN the SageMaker model runs as (default: the session's).
        max_batch: Images per forward pass of the library's endpoint server
            (the local one; SageMaker's TorchServe image batches on its own).
        max_wait_ms: Milliseconds a request waits for others to batch with, in
            the same server.
        top_k: Classes in an answer when the request does not ask (``SM_IMGCLF_TOP_K``).
        forward: The forward path: ``"auto"`` times eager, channels-last and
            ONNX Runtime (float16 autocast on a GPU) as the model loads and keeps
            the fastest; a name forces one (``SM_IMGCLF_FORWARD``).
        decode_threads: Threads decoding request images; ``None`` lets the
            server choose from its cores (``SM_IMGCLF_DECODE_THREADS``).
        max_pixels: Largest image, in pixels, the server decodes; larger ones
            are refused with 413 (``SM_IMGCLF_MAX_PIXELS``).
        environment: More variables for the serving process, over the ones the
            library sets (the settings above, and on SageMaker the instance
            type's workers and threads).
        tags: Tags for the model, endpoint config and endpoint (a mapping or pairs).
        delete_role: The IAM role EventBridge Scheduler assumes to delete the
            endpoint (SageMaker only); by default the role named
            ``sm-imgclf-endpoint-deleter`` in the execution role's account.
    """

    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int = 5
    image_uri: str | None = None
    role: str | None = None
    max_batch: int = 32
    max_wait_ms: float = 5.0
    top_k: int = DEFAULT_TOP_K
    forward: str = "auto"
    decode_threads: int | None = None
    max_pixels: int = MAX_PIXELS
    environment: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    delete_role: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", check_user_tags(self.tags))
        pairs = dict(self.environment)
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in pairs.items()):
            raise bad_value(
                "environment", "a mapping of variable names to strings", self.environment
            )
        object.__setattr__(self, "environment", tuple(sorted(pairs.items())))
        check_number("instance_count", self.instance_count, low=1, integer=True)
        if self.serverless_memory_mb is not None and (
            self.serverless_memory_mb not in range(1024, 6145, 1024)
        ):
            raise bad_value(
                "serverless_memory_mb", "one of 1024, 2048, ... 6144", self.serverless_memory_mb
            )
        check_number("max_batch", self.max_batch, low=1, integer=True)
        check_number("max_wait_ms", self.max_wait_ms, low=0.0)
        check_number("top_k", self.top_k, low=1, integer=True)
        check_choice("forward", self.forward, FORWARDS)
        if self.decode_threads is not None:
            check_number("decode_threads", self.decode_threads, low=1, integer=True)
        check_number("max_pixels", self.max_pixels, low=1, integer=True)

    def spec(
        self, name: str, model_uri: str, *, role: str | None = None, delete_after: str | None = None
    ) -> DeploySpec:
        """The plan of endpoint ``name`` serving ``model_uri`` with these options.

        Args:
            name: The endpoint's name.
            model_uri: The model package.
            role: The role to run as when these options name none.
            delete_after: When the endpoint deletes itself, if it does.
        """
        settings = {f.name: getattr(self, f.name) for f in fields(DeployOptions)}
        settings["role"] = self.role or role
        return DeploySpec(name, model_uri, delete_after=delete_after, **settings)


@dataclass(frozen=True)
class DeploySpec(DeployOptions):
    """What to serve and on what; built without I/O (see :class:`DeployOptions`).

    Attributes:
        name: Name of the endpoint (the model and config share it).
        model_uri: The model package (``model.tar.gz``).
        delete_after: Delete the endpoint this long after it is created
            (``"90m"``, ``"4h"``, ``"2d"``): on SageMaker an EventBridge
            Scheduler one-time schedule, locally a timer in the server.
    """

    name: str
    model_uri: str
    delete_after: str | None = None

    def __post_init__(self) -> None:
        check_resource_name("name", self.name)
        if self.delete_after is not None:
            parse_duration("delete_after", self.delete_after)
        super().__post_init__()

    def container_environment(self) -> dict[str, str]:
        """The serving process's variables: the settings above, then ``environment``."""
        settings = {
            "SM_IMGCLF_TOP_K": str(self.top_k),
            "SM_IMGCLF_FORWARD": self.forward,
            "SM_IMGCLF_MAX_PIXELS": str(self.max_pixels),
        }
        if self.decode_threads is not None:
            settings["SM_IMGCLF_DECODE_THREADS"] = str(self.decode_threads)
        return settings | dict(self.environment)


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
    top_k: int = DEFAULT_TOP_K
    image_uri: str | None = None
    role: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_resource_name("name", self.name)
        object.__setattr__(self, "tags", check_user_tags(self.tags))
        check_number("instance_count", self.instance_count, low=1, integer=True)
        check_number("top_k", self.top_k, low=1, integer=True)
