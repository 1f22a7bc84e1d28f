"""Which SageMaker PyTorch container image runs a job or serves a model.

The images are AWS's PyTorch Deep Learning Containers. Their registry account
differs by region; the table below is the one AWS's SageMaker Python SDK
ships, read on :data:`TABLE_DATE`. No SDK is needed to use it; ``nox -s
image_table`` checks it against SDK v2 and v3. Any other image is used as
given with ``image_uri=``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sm_imgclf._params import bad_value

TABLE_DATE = "2026-08-21"
FRAMEWORK_VERSION = "2.5"


@dataclass(frozen=True)
class FrameworkImage:
    """The tags of one PyTorch release's training and inference images."""

    version: str
    py_version: str


# Framework versions the job program and the handler are tested with.
VERSIONS = {"2.5": FrameworkImage("2.5.1", "py311")}

_DEFAULT_ACCOUNT = "763104351884"
_DEFAULT_REGIONS = frozenset(
    {
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
    }
)
_OTHER_ACCOUNTS = {
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
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
REGISTRIES = {**dict.fromkeys(_DEFAULT_REGIONS, _DEFAULT_ACCOUNT), **_OTHER_ACCOUNTS}


def processor(instance_type: str | None) -> str:
    """``"gpu"`` for the P and G instance families, ``"cpu"`` otherwise and for serverless.

    Raises:
        ConfigurationError: Trainium and Inferentia families, which need other images.
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
    return "gpu" if family[:1] in ("g", "p") else "cpu"


def pytorch_image(
    given: str | None,
    *,
    scope: str,
    region: str,
    instance_type: str | None,
    version: str = FRAMEWORK_VERSION,
) -> str:
    """Return ``given``, else the PyTorch ``scope`` image for ``region`` and the instance.

    Args:
        given: An image URI the user chose, used as is.
        scope: ``"training"`` or ``"inference"``.
        region: The AWS region.
        instance_type: Picks the CPU or GPU image (``None``: serverless, CPU).
        version: The PyTorch version (one of :data:`VERSIONS`).

    Raises:
        ConfigurationError: A region or version the table does not have; the
            message says how to pass ``image_uri=`` instead.
    """
    if given:
        return given
    hint = (
        f"Pass image_uri='<account>.dkr.ecr.{region}.amazonaws.com/pytorch-{scope}:<tag>' "
        "(see AWS's list of Deep Learning Containers)."
    )
    if version not in VERSIONS:
        raise bad_value("framework version", f"one of {sorted(VERSIONS)}", version, hint)
    if region not in REGISTRIES:
        raise bad_value(
            "region", f"a region with PyTorch images (table of {TABLE_DATE})", region, hint
        )
    image = VERSIONS[version]
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    tag = f"{image.version}-{processor(instance_type)}-{image.py_version}"
    return f"{REGISTRIES[region]}.dkr.ecr.{region}.{domain}/pytorch-{scope}:{tag}"
