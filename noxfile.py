"""Developer tasks: nox -s tests, lint, typecheck, docs, demo and benchmarks."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "toolkits", "reliability", "lint", "typecheck", "docs"]
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


@nox.session
def image_table(session: nox.Session) -> None:
    """Check the shipped container-image table against SageMaker SDK v2, then v3."""
    session.install("--no-deps", "-e", ".")  # the table needs neither torch nor boto3
    for sdk in ("sagemaker>=2.235.1,<3", "sagemaker>=3"):
        session.install(sdk)
        session.run("python", "tools/check_image_table.py")


RUFF = "ruff==0.17.6"  # one version: its formatter's output is what --check compares


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff, and that imports keep to their layers."""
    session.install(RUFF)
    paths = ("src", "tests", "benchmarks", "examples", "tools", "noxfile.py", "docs/conf.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("python", "tools/import_layers.py", "src")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation, treating every warning as an error."""
    session.install("-e", ".[docs]")
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
    ]
    for name in names:
        extra = ["--trials", "12", "--trials", "24"] if name == "tuning" else []
        session.run("python", f"benchmarks/{name}.py", *extra)
