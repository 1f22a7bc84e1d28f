"""Developer tasks: nox -s tests, lint, typecheck, docs, demo and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = [
    "tests",
    "toolkits",
    "rayserve",
    "tracking",
    "reliability",
    "lint",
    "typecheck",
    "docs",
]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


TOOLKITS = (
    "sagemaker-training",
    "sagemaker-pytorch-training",
    "sagemaker-inference",
    "sagemaker-pytorch-inference",
    "torchserve",
    "torch-model-archiver",
    "setuptools<81",
    "pyyaml",
)


@nox.session
def toolkits(session: nox.Session) -> None:
    """Run the job and the model package inside AWS's container toolkits."""
    session.install("-e", ".[dev]", *TOOLKITS)
    session.run("pytest", "-m", "toolkits", "-s", "tests/test_toolkits.py", *session.posargs)


# Ray as AWS's Ray Serve SageMaker image pins it (docker/ray/pyproject.toml).
RAY_SERVE = "ray[serve]==2.57.0"


@nox.session
def rayserve(session: nox.Session) -> None:
    """Serve a model package under Ray Serve exactly as AWS's Ray Serve image does."""
    session.install("-e", ".[dev]", RAY_SERVE)
    session.run("pytest", "-m", "rayserve", "-s", "tests/test_ray_serve.py", *session.posargs)


# MLflow as AWS's PyTorch 2.13 SageMaker training image carries it (3.x).
MLFLOW = "mlflow>=3.1,<4"


@nox.session
def tracking(session: nox.Session) -> None:
    """Track jobs and tuning runs in a real MLflow tracking server started by the tests."""
    session.install("-e", ".[dev]", MLFLOW)
    session.run("pytest", "-m", "tracking", "-s", "tests/test_tracking.py", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """The CUDA path on a machine with a GPU: its tests, then its figures."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "gpu", "tests/test_gpu.py", *session.posargs)
    session.run("python", "benchmarks/gpu.py")


@nox.session
def reliability(session: nox.Session) -> None:
    """Hostile inputs, faults and load; SM_IMGCLF_RELIABILITY=full for the full sizes."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "-m",
        "reliability",
        "-s",
        "-p",
        "no:cacheprovider",
        "tests/reliability",
        *session.posargs,
        env={"SM_IMGCLF_RELIABILITY": os.environ.get("SM_IMGCLF_RELIABILITY", "")},
    )


RUFF = "ruff==0.17.6"  # one version: its formatter's output is what --check compares


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff, and that imports keep to their layers."""
    session.install(RUFF)
    paths = ("src", "tests", "benchmarks", "examples", "tools", "noxfile.py", "docs/conf.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("python", "tools/import_layers.py", "src")
    # The job program and the package's code run in AWS's images: Python 3.12 (pytorch
    # 2.13) and 3.13 (pytorch-training 2.10, Ray Serve); pyenv provides both here.
    for version in ("3.12", "3.13"):
        python = _pyenv_python(version)
        session.run(python, "-m", "compileall", "-q", "src/sm_imgclf/runtime", external=True)


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads(Path("pyproject.toml").read_text())


def _requirements(without: tuple[str, ...]) -> list[str]:
    """The package's requirements, less those named in ``without``."""
    import re

    found = _pyproject()["project"]["dependencies"]
    return [r for r in found if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] not in without]


def _extra(name: str) -> list[str]:
    return list(_pyproject()["project"]["optional-dependencies"][name])


def _pyenv_python(version: str) -> str:
    """The interpreter of ``version`` pyenv installed (its shims need a chosen version)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    if not found:
        raise RuntimeError(f"Python {version} is needed: pyenv install {version}")
    return str(found[-1])


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation, treating every warning as an error."""
    # The pages import the package, which imports no torch (free imports): the
    # requirements without torch and torchvision save installing gigabytes.
    session.install(*_requirements(without=("torch", "torchvision")), *_extra("docs"))
    session.install("--no-deps", "-e", ".")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        env={"SM_IMGCLF_DOCS_OFFLINE": os.environ.get("SM_IMGCLF_DOCS_OFFLINE", "")},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Run the end-to-end demo on this machine."""
    session.install("-e", ".[demo]")
    session.run("python", "-m", "sm_imgclf", "demo", *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmarks and print their figures (name some to run only those)."""
    session.install("-e", ".[dev]")
    names = session.posargs or [
        "upload",
        "train_throughput",
        "serving",
        "tuning",
        "recorder_overhead",
        "shared_features",
        "eval_report",
        "data_memory",
        "streaming",
    ]
    for name in names:
        extra = ["--trials", "12", "--trials", "24"] if name == "tuning" else []
        session.run("python", f"benchmarks/{name}.py", *extra)
