"""Building SageMaker training requests: pure functions, no network.

The request is a plain dictionary that botocore validates against the
SageMaker service model before anything is sent, so ``dry_run`` shows exactly
what ``fit`` would send.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sm_imgclf._params import bad_value
from sm_imgclf.backends.sagemaker.images import processor
from sm_imgclf.backends.sagemaker.validation import strict_problems
from sm_imgclf.contracts.metrics import BEST_DEFINITIONS, EPOCH_DEFINITION, METRIC_DEFINITIONS
from sm_imgclf.contracts.search import FEATURES_CHANNEL, TRIAL_DEFINITION
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.errors import ConfigurationError
from sm_imgclf.runtime.package import requirement_lines
from sm_imgclf.runtime.weights import WEIGHTS_CHANNEL, file_digest, kind_of

ENTRY_POINT = "train.py"
CHECKPOINT_PATH = "/opt/ml/checkpoints"
_ENTRY_SCRIPT = b'''"""The SageMaker PyTorch container runs this: the sm-imgclf job program."""

import sys

from sm_imgclf.runtime.job.main import main

sys.exit(main())
'''


def source_tarball(source_dir: str | None = None, requirements: Sequence[str] = ()) -> bytes:
    """Return ``sourcedir.tar.gz``: ``train.py``, the sm_imgclf package and the user's files.

    ``source_dir``'s files sit at the top, where the job imports them, and its
    ``requirements.txt`` with ``requirements`` added becomes the one the
    training toolkit installs. Members are sorted and carry no timestamps or
    owners, so the same inputs always give the same bytes (and the same MD5).
    """
    package = Path(__file__).resolve().parents[2]
    members = {ENTRY_POINT: _ENTRY_SCRIPT}
    for path in [*sorted(package.rglob("*.py")), package / "py.typed"]:
        if "__pycache__" not in path.parts:
            members[f"sm_imgclf/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    wanted = list(requirements)
    if source_dir is not None:
        wanted += _user_files(Path(source_dir), members)
    if wanted:
        members["requirements.txt"] = ("\n".join(dict.fromkeys(wanted)) + "\n").encode()
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as tar,
    ):
        for name in sorted(members):
            _add(tar, name, members[name])
    return buffer.getvalue()


def _user_files(folder: Path, members: dict[str, bytes]) -> list[str]:
    """Add ``folder``'s files to ``members``; return its requirement lines."""
    lines: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in Path(name).parts):
            continue  # .git, editor files, bytecode
        if name == "requirements.txt":
            lines = requirement_lines(path)
            continue
        if name in members or name.startswith("sm_imgclf/"):
            raise bad_value(
                "source_dir",
                "free of train.py and an sm_imgclf folder",
                str(folder),
                f"{name} would replace the library's own file.",
            )
        members[name] = path.read_bytes()
    return lines


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def source_key(data: bytes) -> str:
    """The bucket key of a source tarball, named by its content."""
    return f"sm-imgclf/source/sourcedir-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"


def training_request(
    spec: TrainingSpec, *, bucket: str, region: str, image_uri: str, source_uri: str
) -> dict[str, Any]:
    """Return the ``CreateTrainingJob`` request for ``spec``."""
    if not spec.role:
        raise ConfigurationError(
            "SageMaker training needs an IAM role: pass role='arn:aws:iam::<account>:role/<name>' "
            "to SageMakerSession or to the estimator."
        )
    name = spec.job_name
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                dict(d)
                for d in (
                    *METRIC_DEFINITIONS,
                    EPOCH_DEFINITION,
                    *BEST_DEFINITIONS,
                    *([TRIAL_DEFINITION] if spec.search else []),
                )
            ],
        },
        "RoleArn": spec.role,
        "HyperParameters": {
            **spec.job_arguments(),
            "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": source_uri,
            "sagemaker_region": region,
            **_launcher(spec.instance_type),
        },
        "InputDataConfig": [_channel(n, uri) for n, uri in spec.channels] + _weights(spec),
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs"},
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_run},
        "EnableManagedSpotTraining": spec.use_spot,
        "CheckpointConfig": {"S3Uri": checkpoint_uri(bucket, name), "LocalPath": CHECKPOINT_PATH},
        "Tags": [{"Key": k, "Value": v} for k, v in spec.tags],
    }
    if spec.max_spot_wait is not None:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = spec.max_spot_wait
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    return request


def checkpoint_uri(bucket: str, job_name: str) -> str:
    """Where SageMaker keeps a job's checkpoint folder (and a features job's features)."""
    return f"s3://{bucket}/jobs/{job_name}/checkpoints"


def features_uri(bucket: str, features_job: str) -> str:
    """The prefix a features job's stored features land under, read as a channel."""
    return f"{checkpoint_uri(bucket, features_job)}/{FEATURES_CHANNEL}/"


def _launcher(instance_type: str) -> dict[str, str]:
    """On GPU instances the toolkit starts the job with torchrun, one process per GPU.

    AWS supports torchrun launching on GPU (and Trainium) instances only; on CPU
    instances the job runs once per host and joins the others through ``SM_HOSTS``.
    The flag is sent either way, ``false`` on CPU (the toolkit reads it as JSON),
    because a warm-started tuning job needs its parents' hyperparameter count.
    """
    gpu = processor(instance_type) == "gpu"
    return {"sagemaker_torch_distributed_enabled": "true" if gpu else "false"}


def _channel(name: str, uri: str) -> dict[str, Any]:
    if not uri.startswith("s3://"):
        raise bad_value(
            f"channel {name!r}",
            "an s3:// URI for SageMaker training",
            uri,
            "Upload the dataset with a SageMakerSession first.",
        )
    # An S3 prefix matches keys by their start: without the slash, "train" also reads
    # "train_old/" and "training/".
    prefix = uri if uri.endswith("/") else f"{uri}/"
    return {
        "ChannelName": name,
        "InputMode": "File",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": prefix,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def stream_channels(channels: list[dict[str, Any]], names: frozenset[str]) -> None:
    """Read the channels ``names`` (stored as shards) with FastFile instead of copying them.

    FastFile presents the S3 prefix as files that are fetched as they are read:
    training starts at once, and a dataset larger than the instance's disk
    still reads, shard by shard, sequentially, as FastFile reads best.
    """
    for channel in channels:
        if channel["ChannelName"] in names:
            channel["InputMode"] = "FastFile"


def _weights(spec: TrainingSpec) -> list[dict[str, Any]]:
    """The channel that brings an ``s3://`` weights file into the job.

    The URI is the file's own key, as AWS's SDK passes a ``model_uri``; the file
    lands as ``/opt/ml/input/data/weights/<name>``.
    """
    if kind_of(spec.weights) != "s3":
        return []
    return [
        {
            "ChannelName": WEIGHTS_CHANNEL,
            "InputMode": "File",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": spec.weights,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]


def weights_key(path: Path) -> str:
    """The bucket key of a local weights file, named by its content."""
    return f"sm-imgclf/weights/{file_digest(path)[:16]}/{path.name}"


def validate_request(client: Any, operation: str, request: dict[str, Any]) -> None:
    """Check ``request`` against the whole service model before anything is sent.

    First botocore's own check (types, required members, minimums), then every
    maximum, range, pattern and enum of the operation's shapes and the
    documented cross-field rules (:mod:`.sagemaker_validation`).

    Raises:
        ConfigurationError: Naming every member the service would refuse.
    """
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = client.meta.service_model.operation_model(operation).input_shape
    try:
        validate_parameters(request, shape)
    except ParamValidationError as error:
        raise ConfigurationError(f"The {operation} request is invalid: {error}") from error
    found = strict_problems(operation, request, shape)
    if found:
        raise ConfigurationError(
            f"The {operation} request is invalid; SageMaker would refuse "
            "it:\n  " + "\n  ".join(found)
        )
