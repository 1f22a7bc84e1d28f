"""Building classifiers by name, with their head replaced and parts frozen.

Everything a served model needs to be rebuilt is in a :class:`HeadSpec` plus
the architecture name, so serving never hard-codes a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value, suggest
from sm_imgclf.errors import ConfigurationError
from sm_imgclf.runtime.sources import (
    BUILTINS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    resolve,
    torchvision_models,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HeadSpec",
    "build_model",
    "check_model_name",
    "head_module",
    "list_models",
    "rebuild_model",
    "replace_head",
    "set_trainable",
]
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
    """Return every model name usable without a prefix: torchvision's and the built-ins."""
    return sorted([*torchvision_models(), *BUILTINS])


def check_model_name(name: object, source_dir: str | Path | None = None) -> str:
    """Return the name jobs record for ``name``, or raise naming the sources searched.

    Registered names become their ``"module:function"`` path, so a job in
    another process or container can rebuild them.
    """
    return resolve(name, source_dir).model  # type: ignore[arg-type]


def build_model(
    name: str,
    num_classes: int,
    *,
    weights: str | None = None,
    hidden: int = 0,
    dropout: float = 0.0,
    channels: Mapping[str, Path] | None = None,
) -> tuple[nn.Module, HeadSpec]:
    """Build ``name`` with ``weights`` and a new head for ``num_classes`` classes.

    Args:
        name: A model name (see :mod:`sm_imgclf.runtime.sources`).
        num_classes: Classes to predict.
        weights: ``None`` (random) or a value :mod:`sm_imgclf.runtime.weights` reads.
        hidden: Units of a hidden layer in the head (0: a single linear layer).
        dropout: Dropout before the final layer.
        channels: The job's input channels (an ``s3://`` weights file arrives in one).

    Returns:
        The model and the spec of its head.
    """
    from sm_imgclf.runtime.weights import load_into, read_state

    found = resolve(name)
    model = found.factory()
    path = found.head or _find_head(model)
    if weights is not None and weights.lower() != "none":
        load_into(model, read_state(found, weights, channels), path, weights)
    _drop_auxiliary_heads(model)
    return model, replace_head(model, num_classes, hidden=hidden, dropout=dropout, path=path)


def rebuild_model(name: str, head: HeadSpec) -> nn.Module:
    """Rebuild an architecture with the head described by ``head``, without weights."""
    model: nn.Module = resolve(name).factory()
    _drop_auxiliary_heads(model)
    replace_head(model, head.num_classes, hidden=head.hidden, dropout=head.dropout, path=head.path)
    return model


def replace_head(
    model: nn.Module,
    num_classes: int,
    *,
    hidden: int = 0,
    dropout: float = 0.0,
    path: str | None = None,
) -> HeadSpec:
    """Replace the head at ``path`` (by default the layer giving ImageNet's 1,000 classes)."""
    from torch import nn

    path = path or _find_head(model)
    old = _head_layer(model, path)
    conv = isinstance(old, nn.Conv2d)  # squeezenet classifies with a 1x1 convolution
    spec = HeadSpec(
        path, old.in_channels if conv else old.in_features, num_classes, hidden, dropout
    )
    set_submodule(model, path, new_head(spec, conv=conv))
    return spec


def new_head(spec: HeadSpec, *, conv: bool = False) -> nn.Module:
    """A freshly initialised head as ``spec`` describes it."""
    from torch import nn

    if conv:
        return nn.Conv2d(spec.in_features, spec.num_classes, kernel_size=1)
    layers: list[nn.Module] = []
    if spec.hidden:
        layers += [nn.Linear(spec.in_features, spec.hidden), nn.ReLU(inplace=True)]
    layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
    layers.append(nn.Linear(spec.hidden or spec.in_features, spec.num_classes))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def head_module(model: nn.Module, head: HeadSpec) -> nn.Module:
    """Return the head module of a model built by :func:`build_model`."""
    return model.get_submodule(head.path)


def set_trainable(
    model: nn.Module, head: HeadSpec, trainable: str | list[str] | tuple[str, ...]
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
            raise bad_value(
                "trainable",
                f"'head', 'all' or block names from {known}",
                block,
                suggest(block, known),
            )
    prefixes = tuple(f"{p}." for p in [*blocks, head.path])
    chosen = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
        if parameter.requires_grad:
            chosen.append(name)
    return chosen


def _find_head(model: nn.Module) -> str:
    from torch import nn

    found: str | None = None
    for name, module in model.named_modules():
        linear = isinstance(module, nn.Linear) and module.out_features == _IMAGENET_CLASSES
        conv = isinstance(module, nn.Conv2d) and module.out_channels == _IMAGENET_CLASSES
        if linear or conv:
            found = str(name)
    if found is None:
        raise ConfigurationError(
            f"Cannot find the classifier head of {type(model).__name__}: no linear or 1x1 "
            "convolution layer has 1,000 outputs. Declare it with @backbone(head='...')."
        )
    return found


def _head_layer(model: nn.Module, path: str) -> Any:
    from torch import nn

    try:
        layer = model.get_submodule(path)
    except AttributeError as error:
        raise ConfigurationError(
            f"{type(model).__name__} has no module {path!r} to use as "
            "its head; check the declared head path."
        ) from error
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise ConfigurationError(
            f"The head {path!r} of {type(model).__name__} is a "
            f"{type(layer).__name__}; it must be nn.Linear or nn.Conv2d."
        )
    return layer


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
