"""Recorder and profiler overhead: step time with the checks at their defaults versus off.

The same model, data and seed train in one process, alternating runs with the
monitor (``record_every=25``: gradient, weight and activation records, step
timing, a torch.profiler window, system sampling every second) and without it
(``record_every=0``). Prints the median step time of each and their ratio.
Target: at most 1.05. Nothing is asserted.

    python benchmarks/recorder_overhead.py [--model resnet18] [--size 64] [--images 1600]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sm_imgclf.contracts.hyperparameters import Hyperparameters
from sm_imgclf.runtime.checks.monitor import Monitor
from sm_imgclf.runtime.job.data import SplitData
from sm_imgclf.runtime.job.loop import Trainer
from sm_imgclf.runtime.models import build_model


def run(args: argparse.Namespace, data: SplitData, every: int, folder: Path) -> float:
    """Train ``args.epochs`` epochs; return the whole run's seconds per step."""
    torch.manual_seed(0)
    model, _ = build_model(args.model, 10, weights=None)
    hp = Hyperparameters(
        image_size=args.size,
        batch_size=args.batch,
        epochs=args.epochs,
        augmentation="none",
        record_every=every,
    )
    monitor = None
    if every:
        meta = {
            "model": args.model,
            "class_names": [str(i) for i in range(10)],
            "train_counts": torch.bincount(data.labels, minlength=10).tolist(),
        }
        monitor = Monitor(folder / "debug", hp, meta, torch.device("cpu"), lambda line: None)
    trainer = Trainer(
        model,
        hp,
        torch.device("cpu"),
        (0.5,) * 3,
        (0.25,) * 3,
        folder / "checkpoints",
        log=lambda line: None,
        monitor=monitor,
    )
    started = time.perf_counter()
    trainer.fit(data, None)
    seconds = time.perf_counter() - started
    if monitor is not None:
        monitor.close()
    return seconds / (args.epochs * -(-len(data) // args.batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8, generator=generator
    )
    labels = torch.arange(args.images) % 10
    names = tuple(str(i) for i in range(10))
    data = SplitData(images, labels, names, names)
    times: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        run(args, data, 0, Path(tmp) / "warm")  # first run pays for lazy initialisation
        for round_ in range(args.rounds):
            for name, every in (("off", 0), ("on", 25)):
                times[name].append(run(args, data, every, Path(tmp) / f"{name}{round_}"))
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(
        f"{args.model} at {args.size}px, batch {args.batch}, {args.images} images, "
        f"{args.epochs} epochs x {args.rounds} rounds, CPU threads {torch.get_num_threads()}"
    )
    print(f"recorder off: {off * 1000:.1f} ms/step   on (defaults): {on * 1000:.1f} ms/step")
    print(f"overhead ratio on/off: {on / off:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
