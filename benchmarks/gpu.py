"""CUDA figures: the job loop's training throughput and the handler's serving throughput on a GPU.

On the GPU SageMaker's default instance type has (or whichever CUDA device is
here): full fine-tuning of a torchvision model with the job's own loop
(decoded once, AMP on), images/s from the second epoch on, with augmentation
on the CPU and pageable copies (the first row, the baseline) against
augmentation on the GPU after pinned copies, and channels-last; then the
serving handler's forward at batch 1 and batch 32 on each forward path, and the
one it measured and chose. Without a CUDA device it says so and measures nothing.

    python benchmarks/gpu.py [--images 2048] [--size 224] [--model resnet50] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sm_imgclf.contracts.hyperparameters import Hyperparameters
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.data import SplitData
from sm_imgclf.runtime.job.setup import prepare
from sm_imgclf.runtime.models import IMAGENET_MEAN, IMAGENET_STD, build_model
from sm_imgclf.runtime.package import write_package
from sm_imgclf.runtime.serving.forward import AUTOCAST, CHANNELS_LAST, EAGER
from sm_imgclf.runtime.serving.handler import Batch, model_fn, predict_fn

TRAINING_ROWS = (  # (label, augmentation, augmented on the device, channels-last)
    ("light, augmented on the CPU, pageable copies", "light", False, False),
    ("light, augmented on the GPU, pinned copies", "light", True, False),
    ("strong, augmented on the CPU, pageable copies", "strong", False, False),
    ("strong, augmented on the GPU, pinned copies", "strong", True, False),
    ("light, on the GPU, channels-last", "light", True, True),
)


def training(
    args: argparse.Namespace, work: Path, augmentation: str, on_device: bool, channels_last: bool
) -> float:
    """Images/s of full fine-tuning with the job's own loop, from the second epoch on."""
    classes = tuple(str(i) for i in range(10))
    generator = torch.Generator().manual_seed(0)
    side = round(args.size / 0.875)  # decoded with the margin random crops take from
    images = torch.randint(
        0, 255, (args.images, 3, side, side), dtype=torch.uint8, generator=generator
    )
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    splits = {"train": SplitData(images, labels, classes, classes)}
    hp = Hyperparameters(
        epochs=3,
        image_size=args.size,
        batch_size=args.batch,
        lr_schedule="none",
        augmentation=augmentation,
        record_every=0,
    )
    env = JobEnvironment(
        {}, work / "model", work / "out", work / "ckpt", 1, ("localhost",), "localhost"
    )
    settings = {"model": args.model, "weights": "none", "trainable": ("all",)}
    trainer, _, _ = prepare(settings, hp, splits, torch.device(args.device), env, None)
    trainer.log = lambda line: None
    trainer.augment_on_device, trainer.channels_last = on_device, channels_last
    shutil.rmtree(work / "ckpt", ignore_errors=True)  # each row trains from scratch
    state = trainer.fit(splits["train"], None)
    seconds = [h["epoch_seconds"] for h in state["history"]][1:]
    return args.images / statistics.median(seconds)


def serving(args: argparse.Namespace, work: Path) -> tuple[str, list[str]]:
    """The handler's measured choice, and each forward path's batch-1 and batch-32 figures."""
    network, head = build_model(args.model, 10)
    folder = work / "package"
    write_package(
        folder,
        network.state_dict(),
        {
            "architecture": args.model,
            "head": head.to_dict(),
            "class_ids": [str(i) for i in range(10)],
            "class_names": [str(i) for i in range(10)],
            "image_size": args.size,
            "resize_size": round(args.size / 0.875),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
    )
    rows = []
    for path in (EAGER, CHANNELS_LAST, AUTOCAST, "auto"):
        os.environ["SM_IMGCLF_FORWARD"] = path
        loaded = model_fn(str(folder))
        assert loaded.device.type == args.device, loaded.device
        figures = []
        for batch in (1, 32):
            images = torch.randint(0, 255, (batch, 3, args.size, args.size), dtype=torch.uint8)
            predict_fn(Batch(images, 5), loaded)  # warm-up
            seconds = []
            for _ in range(20):
                started = time.perf_counter()
                predict_fn(Batch(images, 5), loaded)  # ends with a copy to the host
                seconds.append(time.perf_counter() - started)
            figures.append(statistics.median(seconds))
        rows.append(
            f"{path:>13}: batch 1 {figures[0] * 1000:6.1f} ms, batch 32 "
            f"{32 / figures[1]:8,.0f} images/s"
        )
        if path == "auto":
            chosen = f"{loaded.forward.path} ({loaded.forward.reason})"
    del os.environ["SM_IMGCLF_FORWARD"]
    return chosen, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu only checks that the script runs")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run it where `nox -s gpu` runs)")
        return
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "the CPU"
    print(
        f"{args.model} at {args.size} px on {name} ({torch.cuda.device_count()} GPU(s)), "
        f"torch {torch.__version__}"
    )
    amp = "with AMP" if args.device == "cuda" else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        print(f"  training, full fine-tuning {amp}, batch {args.batch}, images/s:")
        baseline = None
        for label, augmentation, on_device, last in TRAINING_ROWS:
            rate = training(args, Path(tmp), augmentation, on_device, last)
            baseline = baseline or rate
            print(f"    {label:<48} {rate:8,.0f}  ({rate / baseline:.2f}x the first row)")
        chosen, rows = serving(args, Path(tmp))
        print("  serving forward through the handler, per path:")
        for row in rows:
            print(f"    {row}")
        print(f"  chosen when the model loaded: {chosen}")


if __name__ == "__main__":
    main()
