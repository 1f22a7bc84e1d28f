"""Upload benchmark: sm-imgclf's parallel, idempotent upload against a sequential loop.

The baseline is what ``sagemaker.Session.upload_data`` does: one
``upload_file`` call per file, one after the other. Both run against a moto S3
server on 127.0.0.1, directly and through a proxy that adds a fixed delay per
request (real S3 answers each request after tens of milliseconds; a local
server answers at once, which hides what parallelism buys). Each measurement
uses a fresh bucket. Prints files/s and the ratios; nothing is asserted.

    python benchmarks/upload.py [--files 2000] [--delay 0.03] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import sm_imgclf as smi
from helpers.s3proxy import S3Proxy


def make_jpegs(root: Path, count: int, classes: int = 10) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        split = ("train", "train", "train", "valid", "test")[(i // classes) % 5]
        path = root / split / f"{i % classes:03d}.class" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def start_moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


class Bench:
    def __init__(self, moto_url: str, root: Path, files: list[Path], concurrency: int) -> None:
        import boto3

        self.boto = boto3.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        )
        self.admin = self.boto.client("s3", endpoint_url=moto_url)
        self.root, self.files, self.concurrency = root, files, concurrency
        self.buckets = 0

    def bucket(self) -> str:
        self.buckets += 1
        name = f"bench-{self.buckets}"
        self.admin.create_bucket(Bucket=name)
        return name

    def sequential(self, url: str) -> float:
        """The baseline: upload_file per file, in order (as upload_data does)."""
        client, bucket = self.boto.client("s3", endpoint_url=url), self.bucket()
        started = time.perf_counter()
        for path in self.files:
            client.upload_file(str(path), bucket, f"seq/{path.relative_to(self.root).as_posix()}")
        return time.perf_counter() - started

    def ours(
        self, url: str, dataset: smi.ImageFolderDataset, bucket: str | None = None
    ) -> tuple[float, smi.Channels, str]:
        bucket = bucket or self.bucket()
        session = smi.SageMakerSession(
            bucket,
            boto_session=self.boto,
            endpoint_urls={"s3": url},
            max_concurrency=self.concurrency,
        )
        started = time.perf_counter()
        channels = dataset.upload(session, "ours", progress=False)
        return time.perf_counter() - started, channels, bucket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.03, help="seconds added per request")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        files = make_jpegs(root, args.files)
        total = sum(p.stat().st_size for p in files)
        print(
            f"{len(files)} JPEGs, {total / len(files):,.0f} bytes each on average; "
            f"{os.cpu_count()} CPUs; concurrency {args.concurrency}"
        )
        dataset = smi.ImageFolderDataset(root)
        started = time.perf_counter()
        dataset.validate(progress=False)
        took = time.perf_counter() - started
        print(f"validation (decode + MD5 of every file, once): {took:.2f}s")
        server, moto_url = start_moto()
        bench = Bench(moto_url, root, files, args.concurrency)
        try:
            report(bench, dataset, moto_url, "direct to moto", len(files))
            with S3Proxy(moto_url, delay=args.delay) as proxy:
                label = f"through a proxy adding {args.delay * 1000:.0f} ms per request"
                (first, baseline), bucket = report(bench, dataset, proxy.url, label, len(files))
                second, channels, _ = bench.ours(proxy.url, dataset, bucket)
                print(
                    f"  second upload, unchanged data: {second:.2f}s, "
                    f"{channels.summary.bytes_uploaded} bytes sent, "
                    f"{len(channels.summary.skipped)} files skipped; "
                    f"{first / second:.1f}x faster than our first upload, "
                    f"{baseline / second:.1f}x faster than the sequential loop"
                )
                fresh = smi.ImageFolderDataset(root)  # as a new process would: validates again
                again, channels, _ = bench.ours(proxy.url, fresh, bucket)
                print(
                    f"  the same with validation redone (a new process): {again:.2f}s, "
                    f"{channels.summary.bytes_uploaded} bytes sent; "
                    f"{first / again:.1f}x faster than our first upload"
                )
        finally:
            server.stop()  # type: ignore[attr-defined]


def report(
    bench: Bench, dataset: smi.ImageFolderDataset, url: str, label: str, count: int
) -> tuple[tuple[float, float], str]:
    baseline = bench.sequential(url)
    ours, channels, bucket = bench.ours(url, dataset)
    assert len(channels.summary.uploaded) == count, channels.summary
    print(f"{label}:")
    print(f"  sequential upload_file loop: {baseline:7.2f}s  {count / baseline:7.1f} files/s")
    print(
        f"  sm-imgclf upload:            {ours:7.2f}s  {count / ours:7.1f} files/s  "
        f"({baseline / ours:.1f}x)"
    )
    return (ours, baseline), bucket


if __name__ == "__main__":
    main()
