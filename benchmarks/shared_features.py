"""Shared backbone features: a head-only search with and without the feature store, one run.

Twenty head-only trials of resnet18 (random search over the head's learning
rate, weight decay and dropout, ten epochs each, two at a time) on the same
images and image size as ``train_throughput.py``, once in a session that shares
features and once in one that does not. Prints the backbone passes each search
ran (from the trials' logs), its wall time, the ratio of the two, and the best
validation accuracy of each (the same trials, so they should agree). The weights
are a fixed random initialisation saved as a file: nothing is downloaded, and
a backbone pass costs what a pretrained one does. Nothing is asserted.

    python benchmarks/shared_features.py [--trials 20] [--images 400] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import make_images

import sm_imgclf as smi
from sm_imgclf.runtime.models import build_model


def search(root: Path, channels: smi.Channels, weights: Path, share: bool,
           args: argparse.Namespace) -> dict[str, float]:
    session = smi.LocalSession(root / ("shared" if share else "alone"), share_features=share)
    estimator = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=str(weights), trainable="head",
        hyperparameters={"image_size": args.size, "epochs": args.epochs, "batch_size": 32,
                         "augmentation": "none", "record_every": 0})
    space = {"lr": smi.Continuous(1e-4, 1e-1, scale="log"),
             "weight_decay": smi.Continuous(1e-6, 1e-1, scale="log"),
             "head_dropout": smi.Continuous(0.0, 0.5)}
    run = smi.TuningRun(estimator, space, strategy="random", max_jobs=args.trials,
                        max_parallel_jobs=args.parallel, seed=0)
    started = time.perf_counter()
    result = run.run(channels, name="head-search", logs=False)
    seconds = time.perf_counter() - started
    logs = ["\n".join(trial.job.logs()) for trial in result.trials]
    return {"passes": float(sum("backbone run once" in log for log in logs)),
            "reads": float(sum("from the shared store" in log for log in logs)),
            "seconds": seconds, "best": result.best.objective or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_images(root / "images", args.images)
        data = smi.ImageFolderDataset(root / "images").split(valid=0.2, seed=0)
        channels = data.upload(smi.LocalSession(root / "uploads"), "images", progress=False)
        torch.manual_seed(0)
        weights = root / "resnet18-fixed.pth"
        torch.save(build_model("resnet18", 1000)[0].state_dict(), weights)
        figures = {share: search(root, channels, weights, share, args)
                   for share in (False, True)}
    print(f"shared features: {args.trials} head-only resnet18 trials, {args.images} images "
          f"at {args.size} px, {args.epochs} epochs, {args.parallel} at a time")
    for share, label in ((False, "without sharing"), (True, "with sharing")):
        f = figures[share]
        print(f"  {label:<16} backbone passes {f['passes']:4.0f}  reads {f['reads']:4.0f}  "
              f"wall {f['seconds']:7.1f} s  best valid:accuracy {f['best']:.4f}")
    ratio = figures[True]["seconds"] / figures[False]["seconds"]
    print(f"  ratio (with / without): wall {ratio:.2f}x, backbone passes "
          f"{figures[True]['passes']:.0f} vs {figures[False]['passes']:.0f}")


if __name__ == "__main__":
    main()
