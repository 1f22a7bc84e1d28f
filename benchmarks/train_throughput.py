"""Training throughput: sm-imgclf's job loop against the classic loop and a minimal one.

Same model, image size, batch and optimizer in one run:

* classic: torchvision ``ImageFolder`` with PIL transforms every epoch and a
  ``DataLoader`` (as a course's ``train_model.py`` does);
* minimal: a hand-written loop over pre-decoded uint8 tensors (the practical limit);
* sm-imgclf: the job's own data pipeline and loop (decoded once, augmented as tensors).

(a) full fine-tuning, images/s from the second epoch on; (b) ``trainable="head"``,
ten epochs end to end against the classic loop's ten epochs and against one
backbone pass over the data. Prints ratios; nothing is asserted.

    python benchmarks/train_throughput.py [--images 400] [--size 64] [--model resnet18]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sm_imgclf.contracts.hyperparameters import Hyperparameters
from sm_imgclf.runtime.images import normalise, resize_size
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.data import load_splits
from sm_imgclf.runtime.job.setup import prepare
from sm_imgclf.runtime.models import IMAGENET_MEAN, IMAGENET_STD, build_model, set_trainable


def make_images(root: Path, count: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (3,), dtype=np.uint8) * np.ones((240, 320, 3), np.uint8)
        noise = rng.integers(0, 60, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(base + noise).save(folder / f"{i:05d}.jpg", quality=90)


def classic(root: Path, args: argparse.Namespace, epochs: int, head_only: bool) -> list[float]:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.Resize(resize_size(args.size)),
            transforms.RandomCrop(args.size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), tf), batch_size=args.batch, shuffle=True
    )
    model, head = build_model(args.model, 10)
    set_trainable(model, head, "head" if head_only else "all")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def minimal(
    images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, epochs: int
) -> list[float]:
    model, _ = build_model(args.model, 10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(labels))
        for start in range(0, len(order), args.batch):
            index = order[start : start + args.batch]
            batch = images[index]
            batch = torch.where(torch.rand(len(index), 1, 1, 1) < 0.5, batch.flip(3), batch)
            loss = torch.nn.functional.cross_entropy(
                model(normalise(batch, IMAGENET_MEAN, IMAGENET_STD)), labels[index]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def ours(
    root: Path, args: argparse.Namespace, epochs: int, head_only: bool, work: Path
) -> tuple[list[float], float]:
    hp = Hyperparameters(
        epochs=epochs,
        image_size=args.size,
        batch_size=args.batch,
        lr_schedule="none",
        augmentation="none" if head_only else "light",
    )
    env = JobEnvironment(
        {"train": root}, work / "model", work / "out", work / "ckpt", 0, ("localhost",), "localhost"
    )
    settings = {
        "model": args.model,
        "weights": "none",
        "trainable": ("head",) if head_only else ("all",),
    }
    started = time.perf_counter()
    splits = load_splits({"train": root}, args.size, hp.augmentation, 0)
    trainer, _, _ = prepare(settings, hp, splits, torch.device("cpu"), env, None)
    trainer.log = lambda line: None
    state = trainer.fit(splits["train"], None)
    return [h["epoch_seconds"] for h in state["history"]], time.perf_counter() - started


def backbone_pass(images: torch.Tensor, args: argparse.Namespace) -> float:
    model, _ = build_model(args.model, 10)  # the head is one linear layer: negligible
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(images), 64):
            model(normalise(images[start : start + 64], IMAGENET_MEAN, IMAGENET_STD))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for part (a)")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_images(root, args.images)
        n = args.images
        print(
            f"{args.model}, {n} JPEGs of 320x240, image_size {args.size}, batch {args.batch}, "
            f"{torch.get_num_threads()} CPU threads"
        )
        splits = load_splits({"train": root}, args.size, "none", 0)
        cached = splits["train"]

        print("(a) full fine-tuning, images/s from the second epoch on:")
        rates = {}
        for label, times in (
            ("classic ImageFolder loop", classic(root, args, args.epochs, False)),
            ("minimal loop on tensors", minimal(cached.images, cached.labels, args, args.epochs)),
            ("sm-imgclf job loop", ours(root, args, args.epochs, False, Path(tmp) / "a")[0]),
        ):
            rates[label] = n * (len(times) - 1) / sum(times[1:])
            print(f"  {label:<26} {rates[label]:8.1f} images/s")
        mine = rates["sm-imgclf job loop"]
        print(
            f"  sm-imgclf / classic = {mine / rates['classic ImageFolder loop']:.2f}x, "
            f"sm-imgclf / minimal = {mine / rates['minimal loop on tensors']:.2f}x"
        )

        print("(b) trainable='head', ten epochs end to end:")
        classic_ten = sum(classic(root, args, 10, True))
        _, ours_ten = ours(root, args, 10, True, Path(tmp) / "b")
        one_pass = backbone_pass(cached.images, args)
        print(f"  classic loop, 10 epochs:          {classic_ten:7.2f}s")
        print(f"  sm-imgclf (decode, features once, 10 head epochs): {ours_ten:7.2f}s")
        print(f"  one backbone pass over pre-decoded images: {one_pass:7.2f}s")
        print(
            f"  classic / sm-imgclf = {classic_ten / ours_ten:.1f}x faster; "
            f"sm-imgclf / one backbone pass = {ours_ten / one_pass:.2f}x"
        )


if __name__ == "__main__":
    main()
