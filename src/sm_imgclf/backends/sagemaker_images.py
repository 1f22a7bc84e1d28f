"""Which SageMaker PyTorch container image runs a job or serves a model."""

from __future__ import annotations

from sm_imgclf._lazy import require
from sm_imgclf.errors import MissingDependencyError

FRAMEWORK_VERSION = "2.5"
PY_VERSION = "py311"


def pytorch_image(given: str | None, *, scope: str, region: str,
                  instance_type: str | None) -> str:
    """Return ``given``, else the image the SageMaker SDK looks up for ``scope``.

    Args:
        given: An image URI the user chose, used as is.
        scope: ``"training"`` or ``"inference"``.
        region: The AWS region.
        instance_type: Picks the CPU or GPU image (``None`` for serverless).
    """
    if given:
        return given
    try:
        image_uris = require("sagemaker.image_uris", extra="sagemaker")
    except MissingDependencyError as error:
        raise MissingDependencyError(
            f"{error} It looks up the PyTorch {scope} image for {region}; or pass "
            f"image_uri='<account>.dkr.ecr.<region>.amazonaws.com/pytorch-{scope}:<tag>'.",
            extra="sagemaker") from None
    return str(image_uris.retrieve(
        framework="pytorch", region=region, version=FRAMEWORK_VERSION, py_version=PY_VERSION,
        instance_type=instance_type, image_scope=scope))
