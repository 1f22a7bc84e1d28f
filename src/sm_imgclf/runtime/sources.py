"""Where architectures come from: torchvision, timm, built-ins and the user's own modules.

A model name picks its source:

- ``"resnet50"`` or ``"torchvision:resnet50"``: torchvision.
- ``"timm:convnext_tiny"``: timm, when installed (``pip install 'sm-imgclf[timm]'``).
- ``"efficientnet_lite0"``: a built-in (:data:`BUILTINS`), or a name given to
  :func:`register_model`.
- ``"package.module:function"``: the user's factory, importable from the
  ``source_dir`` the estimator ships with the job.

Every source answers with a :class:`Backbone`: how to build the ImageNet model
with random weights, where its head is, the input statistics it was trained
with, what ``weights="DEFAULT"`` means, and the pip requirements a container
needs to rebuild it.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value, suggest
from sm_imgclf.errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from torch import nn

# Torchvision's classifiers are trained on ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECLARATION = "sm_imgclf_backbone"  # the attribute @backbone sets on a factory

BUILTINS = {"efficientnet_lite0": "sm_imgclf.runtime.lite:efficientnet_lite0"}
_REGISTERED: dict[str, str] = {}


@dataclass(frozen=True)
class Backbone:
    """What a source says about one architecture.

    Attributes:
        model: The name as the job and the model package record it.
        source: ``"torchvision"``, ``"timm"`` or ``"module"``.
        factory: Builds the ImageNet model with random weights.
        head: Dotted path of the classifier head (``None``: the last layer with
            1,000 outputs).
        mean: Per-channel input mean the weights were trained with.
        std: Per-channel input standard deviation.
        default_weights: What ``weights="DEFAULT"`` loads (``None``: the source decides).
        requirements: pip requirements a container needs to build the model.
        code: The user's top-level module or package, shipped in model packages.
    """

    model: str
    source: str
    factory: Callable[[], nn.Module] = field(repr=False)
    head: str | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    default_weights: str | None = None
    requirements: tuple[str, ...] = ()
    code: Path | None = None


def backbone(
    *,
    head: str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    weights: str | None = None,
    requirements: Sequence[str] = (),
) -> Callable[[Any], Any]:
    """Declare what the library needs to know about a model factory.

    The factory takes no arguments and returns the model with random weights
    and a classifier head; the library loads the weights and replaces the head.

    Args:
        head: Dotted path of the head (``"fc"``, ``"classifier.1"``); by default
            the last linear or 1x1 convolution layer with 1,000 outputs.
        mean: Per-channel mean of the inputs the weights were trained on.
        std: Per-channel standard deviation of those inputs.
        weights: What ``weights="DEFAULT"`` loads: a file, ``s3://`` URI or
            ``package:module/path/in/package.pth``.
        requirements: pip requirements a container needs to run the factory.

    Example:
        >>> @backbone(head="fc", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        ... def tiny_cnn():
        ...     ...
    """
    declared = {
        "head": head,
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "default_weights": weights,
        "requirements": tuple(requirements),
    }

    def declare(factory: Any) -> Any:
        setattr(factory, DECLARATION, declared)
        return factory

    return declare


def register_model(name: str, factory: Callable[[], Any]) -> None:
    """Let ``name`` stand for a factory defined at the top level of an importable module.

    Jobs run in their own process (or container), so what travels is the
    factory's ``"module:function"`` path: define it in a module under the
    estimator's ``source_dir``, not in a notebook or ``__main__``.

    Raises:
        ConfigurationError: The factory cannot be imported by its path.
    """
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", "")
    if not callable(factory) or not module or module == "__main__" or "." in qualname:
        raise bad_value(
            "factory",
            "a function defined at the top level of an importable module",
            factory,
            "Move it into a module under source_dir, then "
            "register it or pass 'package.module:function' as the model.",
        )
    if not isinstance(name, str) or not name or ":" in name:
        raise bad_value("name", "a non-empty name without ':'", name)
    _REGISTERED[name] = f"{module}:{qualname}"


def resolve(model: str, source_dir: str | Path | None = None) -> Backbone:
    """Return the :class:`Backbone` a model name stands for.

    Raises:
        ConfigurationError: No source knows the name (with close matches and
            the sources searched).
        MissingDependencyError: The source's package is not installed.
    """
    if not isinstance(model, str) or not model:
        raise bad_value("model", "a model name such as 'resnet50'", model)
    prefix, colon, rest = model.partition(":")
    if colon and prefix == "timm":
        return _timm(rest)
    if colon and prefix == "torchvision":
        return _torchvision(rest)
    if colon:
        return _module(model, source_dir)
    if model in _REGISTERED or model in BUILTINS:
        found = _module(_REGISTERED.get(model) or BUILTINS[model], source_dir)
        return found if model in _REGISTERED else _renamed(found, model)
    if model in torchvision_models():
        return _torchvision(model)
    known = [*torchvision_models(), *BUILTINS, *_REGISTERED]
    raise bad_value(
        "model",
        "a known architecture",
        model,
        (
            f"{suggest(model, known) or ''} Searched torchvision ({len(torchvision_models())} "
            f"models), the built-ins {sorted(BUILTINS)} and registered names "
            f"{sorted(_REGISTERED) or '(none)'}; use 'timm:<name>' for timm or "
            "'package.module:function' for your own factory."
        ).strip(),
    )


@functools.cache
def torchvision_models() -> list[str]:
    """Return the names of every torchvision image classifier (listed once a process)."""
    import torchvision
    from torchvision import models

    return sorted(torchvision.models.list_models(module=models))


def _renamed(found: Backbone, model: str) -> Backbone:
    from dataclasses import replace

    return replace(found, model=model, code=None)  # built-ins ship with the library


def _torchvision(name: str) -> Backbone:
    import torchvision

    names = torchvision_models()
    if name not in names:
        raise bad_value(
            "model",
            "the name of a torchvision classifier",
            name,
            suggest(name, names) or "See torchvision.models.list_models().",
        )
    return Backbone(
        name,
        "torchvision",
        lambda: torchvision.models.get_model(name, weights=None),
        default_weights="DEFAULT",
    )


def _timm(name: str) -> Backbone:
    try:
        import timm
    except ImportError as error:
        raise MissingDependencyError(
            f"model='timm:{name}' needs timm: pip install 'sm-imgclf[timm]'.", extra="timm"
        ) from error
    names = timm.list_models()
    if name not in names:
        raise bad_value(
            "model",
            "the name of a timm model after 'timm:'",
            name,
            suggest(name, names) or "See timm.list_models().",
        )
    config = timm.models.get_pretrained_cfg(name)
    classifier = getattr(config, "classifier", None)
    # Distilled models name two heads; the first is the classifier.
    head = classifier[0] if isinstance(classifier, list | tuple) else classifier
    return Backbone(
        f"timm:{name}",
        "timm",
        lambda: timm.create_model(name, pretrained=False),
        head=head,
        mean=tuple(getattr(config, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(config, "std", IMAGENET_STD)),
        default_weights="DEFAULT",
        requirements=(f"timm=={timm.__version__}",),
    )


def _module(target: str, source_dir: str | Path | None) -> Backbone:
    module_name, _, function = target.partition(":")
    with importable(source_dir):
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            where = f"in source_dir={str(source_dir)!r}" if source_dir else "on sys.path"
            raise ConfigurationError(
                f"model={target!r}: cannot import {module_name!r} {where} ({error}). Put the "
                "module in the folder you pass as source_dir, or install its package."
            ) from error
    factory = getattr(module, function, None)
    if not callable(factory):
        names = [n for n in vars(module) if callable(getattr(module, n)) and n[:1] != "_"]
        raise bad_value(
            "model",
            f"a function of {module_name}",
            function,
            suggest(function, names) or f"{module_name} defines {names}.",
        )
    declared: dict[str, Any] = getattr(factory, DECLARATION, {})
    return Backbone(target, "module", factory, **declared, code=_top_level(module))


def _top_level(module: Any) -> Path | None:
    """The file or folder of the module's top-level package, unless the library ships it."""
    top = module.__name__.partition(".")[0]
    if top == "sm_imgclf":
        return None
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.origin or spec.origin in {"built-in", "frozen"}:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


@contextmanager
def importable(source_dir: str | Path | None) -> Iterator[None]:
    """Put ``source_dir`` first on ``sys.path`` while the block runs."""
    if source_dir is None:
        yield
        return
    folder = str(Path(source_dir).expanduser().resolve())
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
