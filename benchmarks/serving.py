"""Serving benchmark: the local endpoint against the raw model and a naive server.

Throughput and latency at concurrency 1, 8 and 32, one JPEG per request:

* raw: the model forward in this process, requests grouped by the same
  dynamic batcher, no HTTP and no decoding (the limit);
* naive: the same HTTP server with batching off (one forward per request);
* sm-imgclf: the local endpoint server as ``deploy()`` starts it.

    python benchmarks/serving.py [--size 64] [--model resnet18] [--requests 256]
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sm_imgclf.runtime.models import IMAGENET_MEAN, IMAGENET_STD, build_model
from sm_imgclf.runtime.package import write_package
from sm_imgclf.runtime.serving.batching import Batcher
from sm_imgclf.runtime.serving.handler import Batch, decode_image, model_fn


def make_package(folder: Path, model: str, size: int) -> Path:
    network, head = build_model(model, 10)
    write_package(folder, network.state_dict(), {
        "architecture": model, "head": head.to_dict(), "class_ids": [str(i) for i in range(10)],
        "class_names": [str(i) for i in range(10)], "image_size": size,
        "resize_size": round(size / 0.875), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    return folder


def jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def run_load(call, concurrency: int, total: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, total // concurrency)

    def worker() -> None:
        state = {}
        for _ in range(per_thread):
            started = time.perf_counter()
            call(state)
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), sorted(latencies)


def http_caller(port: int, body: bytes):  # type: ignore[no-untyped-def]
    def call(state: dict) -> None:
        connection = state.setdefault("c", http.client.HTTPConnection("127.0.0.1", port))
        connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
    return call


def start_server(package: Path, max_batch: int, max_wait_ms: float) -> tuple[subprocess.Popen, int]:  # type: ignore[type-arg]
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = "sm_imgclf.runtime.serving.server"
    process = subprocess.Popen([sys.executable, "-m", server, "--model-dir", str(package),
                                "--port", str(port), "--max-batch", str(max_batch),
                                "--max-wait-ms", str(max_wait_ms)], stdout=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as answer:
                if answer.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.1)


def report(label: str, concurrency: int, rate: float, latencies: list[float]) -> None:
    p = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"  {label:<10} c={concurrency:<3} {rate:8.1f} req/s   p50 {p[49]:7.1f} ms   "
          f"p99 {p[98]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--requests", type=int, default=256)
    args = parser.parse_args()
    body = jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        package = make_package(Path(tmp) / "package", args.model, args.size)
        loaded = model_fn(str(package))
        image = decode_image(body, args.size)
        batcher = Batcher(loaded, max_batch=32, max_wait=0.005)
        print(f"{args.model} at {args.size} px, {torch.get_num_threads()} CPU threads, "
              f"{args.requests} requests per setting, a 320x240 JPEG each")
        results: dict[tuple[str, int], tuple[float, list[float]]] = {}
        servers = {"naive": start_server(package, 1, 0.0),
                   "sm-imgclf": start_server(package, 32, 5.0)}
        try:
            for concurrency in (1, 8, 32):
                results[("raw", concurrency)] = run_load(
                    lambda state: batcher.predict(Batch(image[None], 5)), concurrency,
                    args.requests)
                for label, (_, port) in servers.items():
                    results[(label, concurrency)] = run_load(http_caller(port, body),
                                                             concurrency, args.requests)
                for label in ("raw", "naive", "sm-imgclf"):
                    report(label, concurrency, *results[(label, concurrency)])
        finally:
            for process, _ in servers.values():
                process.terminate()
        ours, raw, naive = (results[(k, 32)][0] for k in ("sm-imgclf", "raw", "naive"))
        p50 = {k: statistics.median(results[(k, 1)][1]) for k in ("sm-imgclf", "raw")}
        print(f"at c=32: sm-imgclf / raw = {ours / raw:.2f}x, sm-imgclf / naive = "
              f"{ours / naive:.2f}x; at c=1: p50 sm-imgclf - raw = "
              f"{p50['sm-imgclf'] - p50['raw']:.1f} ms")


if __name__ == "__main__":
    main()
