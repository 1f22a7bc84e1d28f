"""CUDA figures: the job loop's training throughput and the handler's serving throughput on a GPU.

On the GPU SageMaker's default instance type has (or whichever CUDA device is
here): full fine-tuning of a torchvision model with the job's own loop
(decoded once, augmented as tensors, AMP on), images/s from the second epoch
on, and the serving handler's forward at batch 1 and batch 32. Without a CUDA
device it says so and measures nothing.

    python benchmarks/gpu.py [--images 2048] [--size 224] [--model resnet50] [--batch 64]
"""

from __future__ import annotations

import argparse
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
from sm_imgclf.runtime.serving.handler import Batch, model_fn, predict_fn


def training(args: argparse.Namespace, work: Path) -> float:
    classes = tuple(str(i) for i in range(10))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (args.images, 3, args.size, args.size), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    splits = {"train": SplitData(images, labels, classes, classes)}
    hp = Hyperparameters(epochs=3, image_size=args.size, batch_size=args.batch,
                         lr_schedule="none", augmentation="light", record_every=0)
    env = JobEnvironment({}, work / "model", work / "out", work / "ckpt", 1, ("localhost",),
                         "localhost")
    settings = {"model": args.model, "weights": "none", "trainable": ("all",)}
    trainer, _, _ = prepare(settings, hp, splits, torch.device(args.device), env, None)
    trainer.log = lambda line: None
    state = trainer.fit(splits["train"], None)
    seconds = [h["epoch_seconds"] for h in state["history"]][1:]
    return args.images / statistics.median(seconds)


def serving(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    network, head = build_model(args.model, 10)
    folder = work / "package"
    write_package(folder, network.state_dict(), {
        "architecture": args.model, "head": head.to_dict(),
        "class_ids": [str(i) for i in range(10)], "class_names": [str(i) for i in range(10)],
        "image_size": args.size, "resize_size": round(args.size / 0.875),
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    loaded = model_fn(str(folder))
    assert loaded.device.type == args.device, loaded.device
    figures = []
    for batch in (1, 32):
        images = torch.randint(0, 255, (batch, 3, args.size, args.size), dtype=torch.uint8)
        predict_fn(Batch(images, 5), loaded)  # warm-up
        seconds = []
        for _ in range(20):
            started = time.perf_counter()
            predict_fn(Batch(images, 5), loaded)  # ends with a copy to the host: synchronised
            seconds.append(time.perf_counter() - started)
        figures.append(statistics.median(seconds))
    return figures[0] * 1000, 32 / figures[1]


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
    print(f"{args.model} at {args.size} px on {name} ({torch.cuda.device_count()} GPU(s)), "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        rate = training(args, Path(tmp))
        amp = "with AMP" if args.device == "cuda" else "fp32"
        print(f"  training, full fine-tuning {amp}, batch {args.batch}: {rate:,.0f} images/s")
        latency, throughput = serving(args, Path(tmp))
        print(f"  serving forward (handler, fp32): batch 1 {latency:.1f} ms, batch 32 "
              f"{throughput:,.0f} images/s")


if __name__ == "__main__":
    main()
