"""Both examples end to end, offline, on small generated stand-ins of their datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.images import write_image
from test_cifar10 import write_batches

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OFFLINE = [
    "--weights",
    "none",
    "--trainable",
    "all",
    "--model",
    "resnet18",
    "--epochs",
    "2",
    "--image-size",
    "32",
    "--trials",
    "2",
    "--parallel",
    "2",
]
BREEDS = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")


def run_example(script: str, data: Path, workdir: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), str(data), *OFFLINE, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = workdir / "report"
    for name in (
        "checks.html",
        "evaluation.html",
        "tuning_trials.png",
        "confusion_matrix.png",
        "per_class_accuracy.png",
    ):
        assert (report / name).is_file(), name
    assert "Hardest classes (recall):" in done.stdout
    return done.stdout


def test_dog_breeds_on_a_stand_in(tmp_path: Path) -> None:
    for split, count in (("train", 12), ("valid", 4), ("test", 4)):
        for breed in BREEDS:
            for index in range(count):
                write_image(
                    tmp_path
                    / "dogImages"
                    / split
                    / breed
                    / f"{breed.split('.')[1]}_{split}_{index:05d}.jpg",
                    size=(64, 48),
                )
    out = run_example("dog_breeds.py", tmp_path / "dogImages", tmp_path / "run")
    assert "001.Affenpinscher" in out and "Tuning run" in out


def test_dog_breeds_explains_a_wrong_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "dog_breeds.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "has no train/ folder" in done.stderr


def test_cifar10_on_a_stand_in(tmp_path: Path) -> None:
    batches = write_batches(tmp_path / "cifar-10-batches-py", per_class=4)
    out = run_example("cifar10.py", batches, tmp_path / "run")
    assert (tmp_path / "run" / "cifar10" / "test" / "airplane").is_dir()
    assert "Tuning run" in out
