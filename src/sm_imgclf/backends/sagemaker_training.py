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
from pathlib import Path
from typing import Any

from sm_imgclf._params import bad_value
from sm_imgclf.backends.sagemaker_images import processor
from sm_imgclf.backends.sagemaker_validation import strict_problems
from sm_imgclf.contracts.metrics import EPOCH_DEFINITION, METRIC_DEFINITIONS
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.errors import ConfigurationError

ENTRY_POINT = "train.py"
CHECKPOINT_PATH = "/opt/ml/checkpoints"
_ENTRY_SCRIPT = b'''"""The SageMaker PyTorch container runs this: the sm-imgclf job program."""

import sys

from sm_imgclf.runtime.job.main import main

sys.exit(main())
'''


def source_tarball() -> bytes:
    """Return ``sourcedir.tar.gz``: the sm_imgclf package and ``train.py``, reproducibly.

    Members are sorted and carry no timestamps or owners, so the same library
    version always gives the same bytes (and the same MD5).
    """
    package = Path(__file__).resolve().parents[1]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w") as tar:
        _add(tar, ENTRY_POINT, _ENTRY_SCRIPT)
        for path in [*sorted(package.rglob("*.py")), package / "py.typed"]:
            if "__pycache__" not in path.parts:
                _add(tar, f"sm_imgclf/{path.relative_to(package).as_posix()}", path.read_bytes())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def source_key(data: bytes) -> str:
    """The bucket key of a source tarball, named by its content."""
    return f"sm-imgclf/source/sourcedir-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"



def training_request(spec: TrainingSpec, *, bucket: str, region: str, image_uri: str,
                     source_uri: str) -> dict[str, Any]:
    """Return the ``CreateTrainingJob`` request for ``spec``."""
    if not spec.role:
        raise ConfigurationError(
            "SageMaker training needs an IAM role: pass role='arn:aws:iam::<account>:role/<name>' "
            "to SageMakerSession or to the estimator.")
    name = spec.job_name
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri, "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in (*METRIC_DEFINITIONS, EPOCH_DEFINITION)],
        },
        "RoleArn": spec.role,
        "HyperParameters": {
            **spec.job_arguments(), "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": source_uri, "sagemaker_region": region,
            **_launcher(spec.instance_type),
        },
        "InputDataConfig": [_channel(n, uri) for n, uri in spec.channels],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs"},
        "ResourceConfig": {"InstanceType": spec.instance_type,
                           "InstanceCount": spec.instance_count,
                           "VolumeSizeInGB": spec.volume_size_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_run},
        "EnableManagedSpotTraining": spec.use_spot,
        "CheckpointConfig": {"S3Uri": f"s3://{bucket}/jobs/{name}/checkpoints",
                             "LocalPath": CHECKPOINT_PATH},
        "Tags": [{"Key": k, "Value": v} for k, v in spec.tags],
    }
    if spec.max_wait is not None:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = spec.max_wait
    return request


def _launcher(instance_type: str) -> dict[str, str]:
    """On GPU instances the toolkit starts the job with torchrun, one process per GPU.

    AWS supports torchrun launching on GPU (and Trainium) instances only; on CPU
    instances the job runs once per host and joins the others through ``SM_HOSTS``.
    """
    return ({"sagemaker_torch_distributed_enabled": "true"}
            if processor(instance_type) == "gpu" else {})


def _channel(name: str, uri: str) -> dict[str, Any]:
    if not uri.startswith("s3://"):
        raise bad_value(f"channel {name!r}", "an s3:// URI for SageMaker training", uri,
                        "Upload the dataset with a SageMakerSession first.")
    # An S3 prefix matches keys by their start: without the slash, "train" also reads
    # "train_old/" and "training/".
    prefix = uri if uri.endswith("/") else f"{uri}/"
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": prefix,
        "S3DataDistributionType": "FullyReplicated"}}}


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
        raise ConfigurationError(f"The {operation} request is invalid; SageMaker would refuse "
                                 "it:\n  " + "\n  ".join(found))
