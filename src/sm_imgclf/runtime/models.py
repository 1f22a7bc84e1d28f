"""Building torchvision classifiers by name, with their head replaced and parts frozen.

Everything a served model needs to be rebuilt is in a :class:`HeadSpec` plus
the architecture name, so serving never hard-codes a model.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value, suggest
from sm_imgclf.errors import ConfigurationError

if TYPE_CHECKING:
    from torch import nn

# Every torchvision classifier is trained on ImageNet statistics; jobs and packages use these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class HeadSpec:
    """The replaced classifier head.

    Attributes:
        path: Dotted path of the replaced module (``fc``, ``classifier.1``, ``heads.head``).
        in_features: Features entering the head.
        num_classes: Classes it predicts.
        hidden: Units of an optional hidden layer (0: none).
        dropout: Dropout before the final layer.
    """

    path: str
    in_features: int
    num_classes: int
    hidden: int = 0
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready data."""
        return asdict(self)


def list_models() -> list[str]:
    """Return the names of every torchvision image classifier."""
    import torchvision
    from torchvision import models

    return sorted(torchvision.models.list_models(module=models))


def check_model_name(name: object) -> str:
    """Return ``name`` if torchvision has such a classifier, else raise with close matches."""
    names = list_models()
    if name not in names:
        raise bad_value("model", "the name of a torchvision classifier", name,
                        suggest(name, names) or "See sm_imgclf.runtime.models.list_models().")
    return str(name)


def build_model(name: str, num_classes: int, *, weights: str | None = None, hidden: int = 0,
                dropout: float = 0.0) -> tuple[nn.Module, HeadSpec]:
    """Build ``name`` with ``weights`` and a new head for ``num_classes`` classes.

    Args:
        name: A torchvision classifier (``resnet50``, ``efficientnet_b0``, ``vit_b_16`` ...).
        num_classes: Classes to predict.
        weights: ``None`` (random), ``"DEFAULT"``, a weights enum member name
            (``"IMAGENET1K_V2"``), or the path of a state dict file for the
            ImageNet model.
        hidden: Units of a hidden layer in the head (0: a single linear layer).
        dropout: Dropout before the final layer.

    Returns:
        The model and the spec of its head.
    """
    import torchvision

    check_model_name(name)
    model = torchvision.models.get_model(name, weights=None)
    if weights is not None:
        model.load_state_dict(_load_weights(name, weights))
    _drop_auxiliary_heads(model)
    return model, replace_head(model, num_classes, hidden=hidden, dropout=dropout)


def rebuild_model(name: str, head: HeadSpec) -> nn.Module:
    """Rebuild an architecture with the head described by ``head``, without weights."""
    import torchvision

    model: nn.Module = torchvision.models.get_model(name, weights=None)
    _drop_auxiliary_heads(model)
    replace_head(model, head.num_classes, hidden=head.hidden, dropout=head.dropout)
    return model


def replace_head(model: nn.Module, num_classes: int, *, hidden: int = 0,
                 dropout: float = 0.0) -> HeadSpec:
    """Replace the module that produces ImageNet's 1,000 classes, whatever the family."""
    from torch import nn

    path, old = _find_head(model)
    if isinstance(old, nn.Conv2d):  # squeezenet classifies with a 1x1 convolution
        new: nn.Module = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
        in_features = old.in_channels
    else:
        in_features = old.in_features
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout else []
        layers.append(nn.Linear(hidden or in_features, num_classes))
        new = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
    set_submodule(model, path, new)
    return HeadSpec(path, in_features, num_classes, hidden, dropout)


def head_module(model: nn.Module, head: HeadSpec) -> nn.Module:
    """Return the head module of a model built by :func:`build_model`."""
    return model.get_submodule(head.path)


def set_trainable(model: nn.Module, head: HeadSpec, trainable: str | list[str] | tuple[str, ...]
                  ) -> list[str]:
    """Freeze everything except the head and the named blocks; return the trainable names.

    ``trainable`` is ``"head"``, ``"all"``, or top-level block names such as
    ``["layer4"]`` (the head always trains).
    """
    if trainable == "all":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return [name for name, _ in model.named_parameters()]
    blocks = [] if trainable == "head" else list(trainable)
    known = [name for name, _ in model.named_children()]
    for block in blocks:
        if block not in known:
            raise bad_value("trainable", f"'head', 'all' or block names from {known}", block,
                            suggest(block, known))
    prefixes = tuple(f"{p}." for p in [*blocks, head.path])
    chosen = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
        if parameter.requires_grad:
            chosen.append(name)
    return chosen


def _find_head(model: nn.Module) -> tuple[str, Any]:
    from torch import nn

    found = None
    for name, module in model.named_modules():
        linear = isinstance(module, nn.Linear) and module.out_features == _IMAGENET_CLASSES
        conv = isinstance(module, nn.Conv2d) and module.out_channels == _IMAGENET_CLASSES
        if linear or conv:
            found = (name, module)
    if found is None:
        raise ConfigurationError(f"Cannot find the classifier head of {type(model).__name__}.")
    return found


def _drop_auxiliary_heads(model: nn.Module) -> None:
    # inception_v3 and googlenet train auxiliary classifiers; fine-tuning uses the main one.
    for attribute in ("AuxLogits", "aux1", "aux2"):
        if getattr(model, attribute, None) is not None:
            setattr(model, attribute, None)
    if hasattr(model, "aux_logits"):
        model.__dict__["aux_logits"] = False  # a plain flag, not a submodule


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` of ``model``, replacing what was there."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def _load_weights(name: str, weights: str) -> dict[str, Any]:
    import torch

    path = Path(os.path.expanduser(weights))
    if path.suffix in {".pth", ".pt", ".bin"} or path.exists():
        if not path.is_file():
            raise bad_value("weights", "an existing state dict file", weights)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise bad_value("weights", "a file holding a state dict", weights)
        return dict(state.get("state_dict", state))
    enum = _weights_enum(name, weights)
    try:
        return dict(enum.get_state_dict(progress=False, check_hash=False))
    except OSError as error:  # URLError is an OSError: no network, DNS, proxy ...
        raise ConfigurationError(_download_help(name, enum, error)) from error


def _weights_enum(name: str, weights: str) -> Any:
    import torchvision

    weights_enum = torchvision.models.get_model_weights(name)
    members = [*weights_enum.__members__]
    if weights not in members:
        raise bad_value("weights", f"None, a file path, or one of {members}", weights,
                        suggest(weights, members))
    return weights_enum[weights]


def _download_help(name: str, enum: Any, error: BaseException) -> str:
    import torch

    filename = enum.url.rsplit("/", 1)[-1]
    cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return (
        f"Cannot download the {name} weights {enum} from {enum.url} ({error}). This machine "
        f"may have no network access. Download the file elsewhere and either pass "
        f"weights='/path/to/{filename}', or place it at {cache}; or use weights=None to "
        "train from scratch."
    )

