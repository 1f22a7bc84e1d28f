"""Tuning: Hyperband against random search with the same number of trials, in one run.

Both search the same space on scikit-learn's digits (written out as an image
folder) with the same seed, so they draw the same configurations; Hyperband
(locally: asynchronous successive halving) stops poor ones early. Prints, per
strategy, the best valid accuracy and the epochs trained in all, then the
ratios. Target: Hyperband within 1 accuracy point of random's best while
training at most half the epochs. Nothing is asserted.

    python benchmarks/tuning.py [--trials 12] [--epochs 9] [--parallel 2] [--per-class 60]
    python benchmarks/tuning.py --trials 12 --trials 24   # both budgets, one after the other
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sm_imgclf as smi


def tune(
    session: smi.Session, channels: smi.Channels, strategy: str, args: argparse.Namespace
) -> dict[str, float]:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={
            "image_size": args.size,
            "augmentation": "none",
            "epochs": args.epochs,
            "batch_size": 32,
        },
    )
    space = {
        "lr": smi.Continuous(1e-5, 1.0, scale="log"),
        "optimizer": smi.Categorical(["sgd", "adamw"]),
        "weight_decay": smi.Continuous(1e-6, 1e-1, scale="log"),
    }
    run = smi.TuningRun(
        est,
        space,
        strategy=strategy,
        max_jobs=args.trials,
        max_parallel_jobs=args.parallel,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = run.run(channels, name=f"bench-{strategy}", logs=False)
    seconds = time.perf_counter() - started
    trials = result.trials
    return {
        "best": result.best.objective or 0.0,
        "epochs": float(sum(t.epochs or 0 for t in trials)),
        "pruned": float(sum(t.status == "pruned" for t in trials)),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, action="append", help="trial budget (repeat for several; default 12)"
    )
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategies", default="random,hyperband", help="comma-separated; the ratios need both"
    )
    args = parser.parse_args()
    for trials in args.trials or [12]:
        compare(argparse.Namespace(**{**vars(args), "trials": trials}))


def compare(args: argparse.Namespace) -> None:
    """Run both strategies with ``args.trials`` trials and print their figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        smi.digits_to_folder(root / "images", limit_per_class=args.per_class)
        session = smi.LocalSession(root / "session")
        data = smi.ImageFolderDataset(root / "images").split(valid=0.25, seed=0)
        channels = data.upload(session, "digits", progress=False)
        figures = {s: tune(session, channels, s, args) for s in args.strategies.split(",")}
    print(
        f"digits, {args.per_class} images per class at {args.size}px, resnet18 from scratch, "
        f"{args.trials} trials of up to {args.epochs} epochs, {args.parallel} at a time"
    )
    print(
        f"{'strategy':10} {'best valid:accuracy':>20} {'epochs trained':>15} "
        f"{'pruned':>7} {'seconds':>8}"
    )
    for name, row in figures.items():
        print(
            f"{name:10} {row['best']:20.4f} {row['epochs']:15.0f} {row['pruned']:7.0f} "
            f"{row['seconds']:8.1f}"
        )
    if set(figures) != {"random", "hyperband"}:
        return
    random, hyper = figures["random"], figures["hyperband"]
    print(
        f"hyperband - random best: {100 * (hyper['best'] - random['best']):+.1f} points "
        f"(target >= -1.0)"
    )
    print(
        f"hyperband / random epochs: {hyper['epochs'] / random['epochs']:.2f}x "
        f"(target <= 0.50); wall time {hyper['seconds'] / random['seconds']:.2f}x"
    )


if __name__ == "__main__":
    main()
