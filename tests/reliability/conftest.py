"""The reliability suite (``nox -s reliability``): hostile inputs, faults and load.

``SM_IMGCLF_RELIABILITY=full`` runs the full sizes (10,000 fuzzed requests, 60 s
of load); the default is the reduced size CI runs. Each test adds its figures to
``FIGURES``, printed as one table at the end and written to
``reliability-figures.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import sm_imgclf as smi
from helpers.figures import FIGURES, FULL


@pytest.fixture(scope="session", autouse=True)
def figures_table() -> Iterator[None]:
    yield
    lines = [f"reliability figures ({'full' if FULL else 'reduced'} size):"]
    for name, row in FIGURES.items():
        lines.append(f"  {name:<28} " + ", ".join(f"{k}={v}" for k, v in row.items()))
    print("\n" + "\n".join(lines))
    Path("reliability-figures.json").write_text(json.dumps(FIGURES, indent=2))


@pytest.fixture(scope="session")
def trained_package(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[smi.LocalSession, smi.TrainingJob]:
    """A small model trained once for the endpoint tests."""
    root = tmp_path_factory.mktemp("reliability-model")
    smi.digits_to_folder(root / "images", limit_per_class=10)
    session = smi.LocalSession(root / "session")
    channels = smi.ImageFolderDataset(root / "images").upload(session, "d", progress=False)
    job = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 32, "epochs": 1, "augmentation": "none", "record_every": 0},
    ).fit(channels, logs=False)
    return session, job
