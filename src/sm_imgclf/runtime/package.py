"""The model package: weights, a manifest that describes them, and the code that serves them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sm_imgclf._version import __version__

WEIGHTS_NAME = "model.pth"
MANIFEST_NAME = "manifest.json"
PACKAGE_FORMAT = 1
INFERENCE_SCRIPT = '''"""SageMaker inference entry point of an sm-imgclf model package.

The SageMaker PyTorch serving container imports this module, loads the model
with model_fn and serves each request with transform_fn; the handler rebuilds
the model from ../manifest.json, so nothing here depends on the model.
"""

from sm_imgclf.runtime.serving.handler import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
'''
# What serving imports, and nothing else: the handler, the endpoint server, Grad-CAM
# and what they import (a test walks the imports to keep this complete). The CLI, the
# backends and the job program stay out of every model package.
SERVING_MODULES = (
    "_params",
    "_version",
    "errors",
    "contracts/__init__",
    "contracts/deploy",
    "contracts/tags",
    "runtime/__init__",
    "runtime/explain",
    "runtime/images",
    "runtime/lite",
    "runtime/models",
    "runtime/package",
    "runtime/sources",
    "runtime/weights",
    "runtime/serving/__init__",
    "runtime/serving/batching",
    "runtime/serving/forward",
    "runtime/serving/handler",
    "runtime/serving/ray_app",
    "runtime/serving/requests",
    "runtime/serving/server",
)
RAY_CONFIG_NAME = "config.yaml"
# What AWS's Ray Serve SageMaker image runs (serve run /opt/ml/model/config.yaml).
RAY_CONFIG = """# The Ray Serve application of this sm-imgclf model package.
applications:
  - name: sm-imgclf
    route_prefix: /
    import_path: sm_imgclf.runtime.serving.ray_app:build
    args: {}
"""
ROOT_INIT = '''"""The part of sm-imgclf that serves a model package (its ``runtime`` and base).

A model module of the user's declares itself with ``sm_imgclf.backbone`` as it
does at training time; those names resolve here as they do in the library.
"""

import importlib

from sm_imgclf._version import __version__

_LAZY = {
    "backbone": "sm_imgclf.runtime.sources",
    "register_model": "sm_imgclf.runtime.sources",
    "list_models": "sm_imgclf.runtime.models",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sm_imgclf' (as a model package ships it) has no {name!r}")
'''


def write_package(
    model_dir: Path,
    state_dict: dict[str, Any],
    manifest: dict[str, Any],
    *,
    code: Path | None = None,
    requirements: Sequence[str] = (),
) -> None:
    """Write ``model.pth``, ``manifest.json``, ``config.yaml`` and ``code/`` into ``model_dir``.

    ``code/inference.py`` serves the package in the TorchServe-based images,
    ``config.yaml`` in the Ray Serve one (:mod:`sm_imgclf.runtime.serving.ray_app`).

    Args:
        model_dir: The package folder.
        state_dict: The trained weights.
        manifest: What rebuilds the model and describes it.
        code: The user's module or package that builds the model, copied into ``code/``.
        requirements: pip requirements of the model's source; with the
            ``requirements.txt`` beside ``code``, written to ``code/requirements.txt``,
            which SageMaker's serving container installs.
    """
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, model_dir / WEIGHTS_NAME)
    manifest = {"format_version": PACKAGE_FORMAT, "library_version": __version__, **manifest}
    (model_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (model_dir / RAY_CONFIG_NAME).write_text(RAY_CONFIG)
    code_source, code = code, model_dir / "code"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir()
    (code / "inference.py").write_text(INFERENCE_SCRIPT)
    _copy_serving_modules(code / "sm_imgclf")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if code_source is not None:
        if code_source.is_dir():
            shutil.copytree(code_source, code / code_source.name, ignore=ignore)
        else:
            shutil.copy2(code_source, code / code_source.name)
    lines = [*requirements, *user_requirements(code_source)]
    if lines:
        (code / "requirements.txt").write_text("\n".join(dict.fromkeys(lines)) + "\n")


def _copy_serving_modules(target: Path) -> None:
    library = Path(__file__).resolve().parents[1]
    for module in SERVING_MODULES:
        destination = target / f"{module}.py"
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library / f"{module}.py", destination)
    (target / "__init__.py").write_text(ROOT_INIT)


def user_requirements(code: Path | None) -> list[str]:
    """The requirements in the ``requirements.txt`` beside the user's module, if any."""
    return [] if code is None else requirement_lines(code.parent / "requirements.txt")


def requirement_lines(path: Path) -> list[str]:
    """The requirements a pip requirements file lists (no blanks, no comments)."""
    if not path.is_file():
        return []
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """Read a package's manifest, refusing formats this version does not know."""
    data: dict[str, Any] = json.loads((model_dir / MANIFEST_NAME).read_text())
    if data.get("format_version") != PACKAGE_FORMAT:
        raise ValueError(
            f"{model_dir / MANIFEST_NAME} has format_version "
            f"{data.get('format_version')!r}; this library reads {PACKAGE_FORMAT}."
        )
    return data
