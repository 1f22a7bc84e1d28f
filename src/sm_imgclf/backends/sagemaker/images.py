"""Which of AWS's container images runs a SageMaker job or serves a model.

The table is read from AWS's own container repository
(``aws/deep-learning-containers``: every image with its general availability
and end-of-patch dates in ``docs/src/data/``, the registry account of every
region in ``docs/reference/region_availability.md``) at :data:`TABLE_COMMIT`,
committed on :data:`TABLE_DATE`; ``tests/data/dlc_images.json`` is that extract
and the tests check this table against it. Training runs on the newest
``pytorch`` SageMaker line still patched; serving on the Ray Serve SageMaker
image (the TorchServe ``pytorch-inference`` line ended with 2.6). Older lines
stay selectable by name (``image_uri="pytorch-training:2.5"``), with a warning
that names the day their patches ended. Any other image is used as given.
"""

from __future__ import annotations

import datetime
import re
import warnings
from dataclasses import dataclass

from sm_imgclf._params import bad_value

TABLE_DATE = "2026-08-21"
TABLE_COMMIT = "e0ecedea6a1c56d6b5914f9cfb2fec5c548e67e0"


class UnpatchedImageWarning(UserWarning):
    """A job or endpoint is about to run in an image AWS no longer patches."""


@dataclass(frozen=True)
class ImageLine:
    """One image line: a repository at one version, with a tag per processor.

    Attributes:
        repository: The ECR repository (``pytorch``, ``pytorch-training``, ``ray`` ...).
        version: The line's version (PyTorch's, or Ray's for ``ray``).
        cpu: The tag for CPU instances.
        gpu: The tag for GPU instances.
        python: The image's Python (``py312``).
        ga: The day it became generally available.
        eop: The day AWS stops patching it (``None``: none published).
    """

    repository: str
    version: str
    cpu: str
    gpu: str
    python: str
    ga: str
    eop: str | None

    @property
    def name(self) -> str:
        """What a user passes as ``image_uri`` to pin this line: ``repository:version``."""
        return f"{self.repository}:{self.version}"

    def patched(self, today: datetime.date) -> bool:
        """Whether AWS still patches the line on ``today``."""
        return self.eop is None or datetime.date.fromisoformat(self.eop) >= today


# Floating tags (the minor version, not the patch release): a line's patches reach new jobs.
TRAINING = (
    ImageLine(
        "pytorch",
        "2.13",
        "2.13-cpu-amzn2023-sagemaker",
        "2.13-cu133-amzn2023-sagemaker",
        "py312",
        "2026-07-20",
        "2027-07-20",
    ),
    ImageLine(
        "pytorch",
        "2.12",
        "2.12-cpu-amzn2023-sagemaker",
        "2.12-cu130-amzn2023-sagemaker",
        "py312",
        "2026-07-02",
        "2027-07-02",
    ),
    ImageLine(
        "pytorch-training",
        "2.10",
        "2.10-cpu-py313-ubuntu22.04-sagemaker-v1",
        "2.10-gpu-py313-cu130-ubuntu22.04-sagemaker-v1",
        "py313",
        "2026-01-21",
        "2027-01-21",
    ),
    ImageLine(
        "pytorch-training",
        "2.6",
        "2.6-cpu-py312-ubuntu22.04-sagemaker-v1",
        "2.6-gpu-py312-cu126-ubuntu22.04-sagemaker-v1",
        "py312",
        "2025-01-29",
        "2026-01-29",
    ),
    # No longer in AWS's data: the line this library used before, kept for its users.
    ImageLine(
        "pytorch-training",
        "2.5",
        "2.5.1-cpu-py311",
        "2.5.1-gpu-py311",
        "py311",
        "2024-10-29",
        "2025-10-29",
    ),
)
SERVING = (
    # Ray 2.57 in the image's docker/ray/pyproject.toml; AWS publishes no end of patch.
    ImageLine(
        "ray",
        "2.57",
        "serve-ml-sagemaker-cpu-v1",
        "serve-ml-sagemaker-cuda-v1",
        "py313",
        "2026-04-23",
        None,
    ),
    ImageLine(
        "pytorch-inference",
        "2.6",
        "2.6-cpu-py312-ubuntu22.04-sagemaker-v1",
        "2.6-gpu-py312-cu124-ubuntu22.04-sagemaker-v1",
        "py312",
        "2025-01-29",
        "2026-06-30",
    ),
    ImageLine(
        "pytorch-inference",
        "2.5",
        "2.5.1-cpu-py311",
        "2.5.1-gpu-py311",
        "py311",
        "2024-10-29",
        "2025-10-29",
    ),
)
LINES = {"training": TRAINING, "inference": SERVING}

_SHARED_ACCOUNT = "763104351884"
REGISTRIES = {
    **dict.fromkeys(
        (
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ca-central-1",
            "eu-central-1",
            "eu-north-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "sa-east-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        ),
        _SHARED_ACCOUNT,
    ),
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
}
_LINE_NAME = re.compile(r"^[a-z][a-z0-9-]*:\d+\.\d+$")
# Graviton families carry a "g" after the generation: c6g, c7gn, m6gd, r7g, t4g, g5g.
_GRAVITON = re.compile(r"^[a-z]+\d+g[a-z]*$")


def processor(instance_type: str | None) -> str:
    """``"gpu"`` for the P and G instance families, ``"cpu"`` otherwise and for serverless.

    Raises:
        ConfigurationError: Trainium and Inferentia families, which need Neuron
            images, and Graviton families (arm64), for which AWS publishes no
            patched SageMaker PyTorch or Ray image.
    """
    if instance_type is None:  # serverless endpoints run on CPUs
        return "cpu"
    family = instance_type.split(".")[1] if instance_type.count(".") >= 2 else instance_type
    if family.startswith(("inf", "trn")):
        raise bad_value(
            "instance_type",
            "a CPU or NVIDIA GPU instance type for the PyTorch images",
            instance_type,
            "Pass image_uri= for a Neuron image.",
        )
    if _GRAVITON.match(family):
        raise bad_value(
            "instance_type",
            "an x86 instance type (AWS's SageMaker PyTorch and Ray images are built for x86)",
            instance_type,
            "Graviton (arm64) has no patched SageMaker image: the last, pytorch-inference-"
            "arm64 2.6, ended on 2026-06-30. Choose ml.c7i, ml.m7i or ml.r7i of the same "
            "size, or pass image_uri= for an arm64 image of your own.",
        )
    return "gpu" if family[:1] in ("g", "p") else "cpu"


def current_line(scope: str, today: datetime.date | None = None) -> ImageLine:
    """The newest line of ``scope`` (``"training"`` or ``"inference"``) still patched."""
    lines = LINES[scope]
    day = today or datetime.date.today()
    return next((line for line in lines if line.patched(day)), lines[0])


def find_line(name: str, scope: str) -> ImageLine:
    """The line ``repository:version`` names, or an error listing the lines there are."""
    found = {line.name: line for line in LINES[scope]}
    if name not in found:
        raise bad_value(
            f"{scope} image line", f"one of {sorted(found)}", name, "Or pass a full image URI."
        )
    return found[name]


def pytorch_image(
    given: str | None,
    *,
    scope: str,
    region: str,
    instance_type: str | None,
    today: datetime.date | None = None,
) -> str:
    """Return the image URI for a job (``scope="training"``) or a model (``"inference"``).

    Args:
        given: A full image URI, used as is; a line name such as
            ``"pytorch-training:2.5"``, looked up; or ``None`` for the current line.
        scope: ``"training"`` or ``"inference"``.
        region: The AWS region.
        instance_type: Picks the CPU or GPU tag (``None``: serverless, CPU).
        today: The day to judge end of patch by (tests pin it).

    Raises:
        ConfigurationError: A region or line the table does not have, or an
            instance type no image is built for; the message says what to pass.

    Warns:
        UnpatchedImageWarning: The line named has passed its end of patch.
    """
    if given and not _LINE_NAME.match(given):
        return given
    line = find_line(given, scope) if given else current_line(scope, today)
    if region not in REGISTRIES:
        raise bad_value(
            "region",
            f"a region with AWS's Deep Learning Containers (table of {TABLE_DATE})",
            region,
            f"Pass image_uri='<account>.dkr.ecr.{region}.amazonaws.com/{line.repository}:<tag>'.",
        )
    tag = line.gpu if processor(instance_type) == "gpu" else line.cpu
    if not line.patched(today or datetime.date.today()):
        newest = current_line(scope, today)
        warnings.warn(
            f"{line.name} ({tag}) is past its end of patch ({line.eop}): AWS no longer "
            f"fixes its security issues. {newest.name} is the current line.",
            UnpatchedImageWarning,
            stacklevel=3,
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{REGISTRIES[region]}.dkr.ecr.{region}.{domain}/{line.repository}:{tag}"


# The AMI AWS's Ray Serve SageMaker docs name for GPU endpoints (CPU endpoints need none).
RAY_GPU_AMI = "al2-ami-sagemaker-inference-gpu-3-1"


def is_ray_serve(image_uri: str) -> bool:
    """Whether ``image_uri`` is AWS's Ray Serve image, whose contract is ``config.yaml``."""
    return image_uri.rpartition("/")[2].partition(":")[0] == "ray"


def inference_ami(image_uri: str, instance_type: str | None) -> str | None:
    """The production variant's ``InferenceAmiVersion``: set for the Ray image on GPUs."""
    if instance_type is None or not is_ray_serve(image_uri):
        return None
    return RAY_GPU_AMI if processor(instance_type) == "gpu" else None
