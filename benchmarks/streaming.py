"""Streaming benchmark: tar shards against one object per image, and streamed against held training.

Two measurements, each against a baseline measured in the same run:

1. Transfer. ``upload()`` of many small JPEGs as one object each, then with
   ``shards=True``; then reading every object back with 16 threads (what
   SageMaker's File mode does on every host of every job) against reading the
   shards. Both go to a moto S3 server through a proxy adding a fixed delay
   per request, as real S3's tens of milliseconds do.
2. Training. One epoch of the real training loop on a CIFAR-shaped folder
   (32-px PNGs), the split held in memory (decoded once, before the epoch)
   against streamed from its shards (decoded by DataLoader workers during the
   epoch); each in its own process, with its peak memory.

Prints the figures and the ratios; nothing is asserted.

    python benchmarks/streaming.py [--files 20000] [--delay 0.03] [--images 10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from upload import make_jpegs, start_moto

import sm_imgclf as smi
from helpers.s3proxy import S3Proxy


def transfer(files: int, delay: float, concurrency: int) -> None:
    import boto3

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_jpegs(root, files)
        dataset = smi.ImageFolderDataset(root)
        dataset.validate(progress=False, check="headers")
        server, moto_url = start_moto()
        boto = boto3.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        )
        boto.client("s3", endpoint_url=moto_url).create_bucket(Bucket="bench")
        try:
            with S3Proxy(moto_url, delay=delay) as proxy:
                session = smi.SageMakerSession(
                    "bench",
                    boto_session=boto,
                    endpoint_urls={"s3": proxy.url},
                    max_concurrency=concurrency,
                )
                client = boto.client("s3", endpoint_url=proxy.url)
                print(f"{files} JPEGs through a proxy adding {delay * 1000:.0f} ms per request:")
                timings = {}
                for shards in (False, True):
                    prefix = "shards" if shards else "objects"
                    started = time.perf_counter()
                    dataset.upload(session, prefix, shards=shards, progress=False)
                    sent = time.perf_counter() - started
                    read, count = read_all(client, prefix, concurrency)
                    timings[shards] = (sent, read)
                    print(
                        f"  {prefix:<8} upload {sent:7.2f}s   read back {read:7.2f}s "
                        f"({count} objects)"
                    )
                (up0, read0), (up1, read1) = timings[False], timings[True]
                print(f"  shards: upload {up0 / up1:.1f}x faster, read back {read0 / read1:.1f}x")
                imagenet(files / up0)
        finally:
            server.stop()  # type: ignore[attr-defined]


# ImageNet-1k's training split, and S3 Standard's request prices in us-east-1.
IMAGENET_FILES, IMAGENET_BYTES = 1_281_167, 140e9
PUT_PER_1000, GET_PER_1000 = 0.005, 0.0004


def imagenet(files_per_s: float) -> None:
    """What the measured per-object rate means for ImageNet, against 128 MiB shards."""
    shards = round(IMAGENET_BYTES / 2**27)
    print(f"  projected for ImageNet's training split ({IMAGENET_FILES:,} files, 140 GB):")
    for label, count in (("objects", IMAGENET_FILES), ("shards", shards)):
        puts, gets = count * PUT_PER_1000 / 1000, count * GET_PER_1000 / 1000
        print(
            f"    {label:<8} {count:>9,} objects: upload requests ${puts:.2f}, "
            f"each host of each job reads them for ${gets:.4f}"
        )
    print(
        f"    one object per image at the rate measured here: "
        f"{IMAGENET_FILES / files_per_s / 3600:.1f} h of requests before any bandwidth limit; "
        "shards are bound by bandwidth alone (and File mode would first copy all 140 GB "
        "to every host, more than a g4dn.xlarge's 125 GB disk; FastFile copies nothing)"
    )


def churn(trials: int = 200) -> None:
    """How many shards one added or changed image rewrites, on simulated manifests."""
    import hashlib
    import random

    from sm_imgclf.data.manifest import ManifestEntry
    from sm_imgclf.data.shards import plan_shards

    worse = {"added": 0, "changed": 0}
    for trial in range(trials):
        rng = random.Random(trial)

        def entry(i: int, salt: str = "", trial: int = trial, rng: random.Random = rng) -> Any:
            md5 = hashlib.md5(f"{trial}-{i}{salt}".encode()).hexdigest()
            return ManifestEntry(f"c/{i}.jpg", 0, rng.randint(60_000, 160_000), md5, 500, 375)

        entries = [entry(i) for i in range(12_000)]
        paths = {e.path: Path(e.path) for e in entries}
        before = {plan.name for plan in plan_shards(entries, paths)}
        for change, changed, most in (
            ("added", [*entries, entry(99_999)], 1),
            ("changed", [*entries[:5], entry(5, "x"), *entries[6:]], 2),
        ):
            paths.update({e.path: Path(e.path) for e in changed})
            new = {plan.name for plan in plan_shards(changed, paths)} - before
            worse[change] += len(new) > most
    print(
        f"shards rewritten by one image, {trials} simulated 12,000-photo splits "
        f"(60-160 kB, 128 MiB shards, ~{len(before)} shards): more than the one it joins "
        f"in {worse['added'] / trials:.1%} of additions; more than the two it leaves and "
        f"joins in {worse['changed'] / trials:.1%} of changes"
    )


def read_all(client: object, prefix: str, concurrency: int) -> tuple[float, int]:
    """List and GET every object under ``prefix`` with ``concurrency`` threads."""
    started = time.perf_counter()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=prefix):  # type: ignore[attr-defined]
        keys += [item["Key"] for item in page.get("Contents", [])]

    def get(key: str) -> int:
        return len(client.get_object(Bucket="bench", Key=key)["Body"].read())  # type: ignore[attr-defined]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, keys))
    return time.perf_counter() - started, len(keys)


def make_pngs(root: Path, count: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        split = "valid" if (i // classes) % 10 == 9 else "train"
        path = root / split / f"{i % classes}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth: PNG-compressible
        Image.fromarray(base).resize((32, 32), Image.Resampling.BILINEAR).save(path)


def training(images: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_pngs(root, images)
        session = smi.LocalSession(root=Path(tmp) / "store")
        dataset = smi.ImageFolderDataset(root)
        dataset.validate(progress=False)
        found = {}
        for shards in (False, True):
            channels = dataset.upload(session, f"s{shards}", shards=shards, progress=False)
            folder = channels["train"].removeprefix("file://")
            out = subprocess.run(
                [sys.executable, __file__, "--epoch", folder],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            found[shards] = json.loads(out.strip().splitlines()[-1])
        print(f"one epoch of resnet18 at 32 px on {found[False]['images']} training images:")
        for shards, label in ((False, "held in memory"), (True, "streamed")):
            r = found[shards]
            print(
                f"  {label:<15} decode before {r['decode_s']:6.2f}s   epoch {r['epoch_s']:6.2f}s "
                f"{r['images'] / r['epoch_s']:7.1f} images/s   peak RSS {r['rss_mib']:7.1f} MiB"
            )
        held, streamed = found[False], found[True]
        ratio = (held["epoch_s"]) / streamed["epoch_s"]
        whole = (held["epoch_s"] + held["decode_s"]) / (streamed["epoch_s"] + streamed["decode_s"])
        print(f"  streamed / held images/s: {ratio:.2f}x in the epoch, {whole:.2f}x with decoding")


def one_epoch(folder: str) -> None:
    """Child process: load the split, train one epoch, print the figures as JSON."""
    import torch

    from sm_imgclf.runtime.job.data import load_splits
    from sm_imgclf.runtime.job.loop import Trainer
    from sm_imgclf.runtime.models import build_model

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    train = load_splits({"train": Path(folder)}, 32, "light", 0)["train"]
    decoded = time.perf_counter() - started
    model, _ = build_model("resnet18", 10)
    hp = smi.Hyperparameters.from_dict(
        {"epochs": 1, "batch_size": 128, "image_size": 32, "record_every": 0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = Trainer(model, hp, torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, Path(tmp))
        run.log = lambda line: None
        started = time.perf_counter()
        run.fit(train, None)
        epoch = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children) / 1024
    print(json.dumps({"images": len(train), "decode_s": decoded, "epoch_s": epoch, "rss_mib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--delay", type=float, default=0.03, help="seconds added per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--images", type=int, default=10_000, help="0 skips the training part")
    parser.add_argument("--epoch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch:
        one_epoch(args.epoch)
        return
    logging.disable(logging.WARNING)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    print(f"{os.cpu_count()} CPUs")
    churn()
    if args.images:
        training(args.images)
    transfer(args.files, args.delay, args.concurrency)


if __name__ == "__main__":
    main()
