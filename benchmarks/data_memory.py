"""The decoded-image cache: its size and peak memory, held at own size, full size, or spilled.

A CIFAR-10-shaped folder (generated 32x32 PNGs, ``--images`` of them in ten
classes) is loaded as the job loads its ``train`` channel at image size 224
with light augmentation, each way in its own process:

- ``full size``: the images enlarged to 256 px as they are decoded (the
  baseline: how every split was held before);
- ``own size``: held at 32 px and enlarged per batch;
- ``spilled``: own size, in a file on local disk (``SM_IMGCLF_CACHE_MEMORY``
  set so that nothing fits in memory);
- ``full, spilled``: full size, in a file on local disk (what a cache too big
  for memory costs; peak RSS counts the file's pages the kernel kept resident).

Each row prints the cache's bytes, the process's peak RSS, the decoding rate,
and training batches per second (64 images gathered, enlarged, cropped, flipped
and normalised on the CPU), with ratios against the baseline. Nothing is asserted.

    python benchmarks/data_memory.py [--images 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODES = ("full size", "own size", "spilled", "full, spilled")


def write_folder(root: Path, count: int) -> Path:
    """``count`` random 32x32 PNGs in ten class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return root / "train"


def measure(folder: Path, mode: str) -> dict[str, float]:
    """Load the channel the ``mode`` way in this process and time batches from it."""
    import torch

    from sm_imgclf.runtime.images import resize_size
    from sm_imgclf.runtime.job.data import list_channel, load_split
    from sm_imgclf.runtime.job.feed import Batches, Feeder
    from sm_imgclf.runtime.job.room import Need, Room

    listing = list_channel(folder)
    if mode.startswith("full"):  # no sizes known: held at the side asked for, as before
        listing = dataclasses.replace(listing, shorter_sides=[])
    side = resize_size(224)
    held = listing.held_side(side)
    spill = Room.measure([Path(tempfile.gettempdir())]).place(
        [Need("train", len(listing.files), held)]
    )
    started = time.perf_counter()
    split = load_split("train", folder, side, shorter=side, workers=0, spill=spill, listing=listing)
    decoded = time.perf_counter() - started
    batches = Batches(Feeder(torch.device("cpu")), 224, "light", (0.5,) * 3, (0.25,) * 3)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(split), generator=generator)
    started, steps = time.perf_counter(), 0
    for start in range(0, min(len(split), 64 * 60), 64):
        batches.train(split, order[start : start + 64], generator)
        steps += 1
    return {
        "bytes": split.images.numel(),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "decode_rate": len(split) / decoded,
        "batches_per_s": steps / (time.perf_counter() - started),
        "spilled": spill is not None,
    }


def run_mode(folder: Path, mode: str) -> dict[str, float]:
    env = dict(os.environ)
    if mode.endswith("spilled"):
        env["SM_IMGCLF_CACHE_MEMORY"] = str(1536 * 2**20)  # just the reserve: no room left
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(folder), mode],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), args.images)
        rows = {mode: run_mode(folder, mode) for mode in MODES}
    base = rows["full size"]
    print(f"{args.images:,} CIFAR-10-shaped images (32x32 PNG), train split at image_size 224:")
    print(
        f"  {'held':14} {'cache MiB':>10} {'peak RSS MiB':>13} {'x base':>7} "
        f"{'decode/s':>9} {'batches/s':>10} {'x base':>7}"
    )
    for mode, row in rows.items():
        print(
            f"  {mode:14} {row['bytes'] / 2**20:10.1f} {row['peak_rss'] / 2**20:13.1f} "
            f"{row['peak_rss'] / base['peak_rss']:7.2f} {row['decode_rate']:9.0f} "
            f"{row['batches_per_s']:10.2f} {row['batches_per_s'] / base['batches_per_s']:7.2f}"
        )


if __name__ == "__main__":
    main()
