"""Shared backbone features: a head-only search three ways, in one run.

Twenty head-only trials of resnet18 (random search over the head's learning
rate, weight decay and dropout, ten epochs each) on the same images and image
size as ``train_throughput.py``: one job per trial, two at a time, in a session
that does not share features; the same in one that does; and the whole search
inside one job (``in_one_job=True``, the SageMaker path, run by the local
backend). Prints the backbone passes each search ran (from the logs), its wall
time, the ratios against the first, and the best validation accuracy of each
(the same configurations, so they should agree). The weights
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

MODES = {
    "alone": "a job per trial, no sharing",
    "shared": "a job per trial, shared features",
    "one job": "the whole search in one job",
}


def search(
    root: Path, channels: smi.Channels, weights: Path, mode: str, args: argparse.Namespace
) -> dict[str, float]:
    session = smi.LocalSession(root / mode, feature_store=mode == "shared")
    estimator = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=str(weights),
        trainable="head",
        hyperparameters={
            "image_size": args.size,
            "epochs": args.epochs,
            "batch_size": 32,
            "augmentation": "none",
            "record_every": 0,
        },
    )
    space = {
        "lr": smi.Continuous(1e-4, 1e-1, scale="log"),
        "weight_decay": smi.Continuous(1e-6, 1e-1, scale="log"),
        "head_dropout": smi.Continuous(0.0, 0.5),
    }
    one_job = mode == "one job"
    run = smi.TuningRun(
        estimator,
        space,
        strategy="random",
        max_jobs=args.trials,
        max_parallel_jobs=1 if one_job else args.parallel,
        seed=0,
        in_one_job=one_job,
    )
    started = time.perf_counter()
    result = run.run(channels, name="head-search", logs=False)
    seconds = time.perf_counter() - started
    logs = (
        ["\n".join(result.best.job.logs())]
        if one_job
        else ["\n".join(trial.job.logs()) for trial in result.trials]
    )
    return {
        "passes": float(sum("backbone run once" in log for log in logs)),
        "reads": float(sum(log.count("from the shared store") for log in logs)),
        "seconds": seconds,
        "best": result.best.objective or 0.0,
    }


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
        figures = {mode: search(root, channels, weights, mode, args) for mode in MODES}
    print(
        f"shared features: {args.trials} head-only resnet18 trials, {args.images} images "
        f"at {args.size} px, {args.epochs} epochs ({args.parallel} jobs at a time, or all "
        "in one job)"
    )
    base = figures["alone"]
    for mode, label in MODES.items():
        f = figures[mode]
        print(
            f"  {label:<34} backbone passes {f['passes']:3.0f}  reads {f['reads']:3.0f}  "
            f"wall {f['seconds']:6.1f} s ({f['seconds'] / base['seconds']:.2f}x)  "
            f"best valid:accuracy {f['best']:.4f}"
        )


if __name__ == "__main__":
    main()
