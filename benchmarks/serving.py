"""Serving benchmark: the local endpoint against the raw model, a naive server and AWS's toolkit.

All in one run, one 320x240 JPEG per request:

* forward <path>: the model's forward pass alone on each path the server can
  choose (eager, channels-last, ONNX Runtime where installed), batch 1 latency
  and batch 8 throughput: what the model itself can do on these cores;
* raw: the chosen forward in this process behind the same dynamic batcher,
  no HTTP and no decoding;
* naive: the same HTTP server with batching off (one forward per request);
* sm-imgclf: the local endpoint server as ``deploy()`` starts it;
* toolkit: AWS's inference toolkit + TorchServe with its defaults and as
  ``deploy()`` configures it (``benchmarks/serving_toolkit.py``, when ``nox -s
  toolkits`` has installed them; ``--no-toolkit`` skips it and the next);
* ray serve: the package under Ray Serve as AWS's Ray Serve image runs it
  (``benchmarks/serving_ray.py``, when ``nox -s rayserve`` has installed Ray;
  target: c=8 at least 0.8x the local server's).

It ends with the three targets: the server at c=8 against the best batched
forward and against the toolkit as configured, and its c=1 p50 against the
best batch-1 forward.

    python benchmarks/serving.py [--size 224] [--model resnet18] [--requests 256]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
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
from sm_imgclf.runtime.serving.handler import Batch, decode_image, model_fn, normalise

ROOT = Path(__file__).resolve().parent.parent
TOOLKIT_PYTHON = ROOT / ".nox" / "toolkits" / "bin" / "python"
RAY_PYTHON = ROOT / ".nox" / "rayserve" / "bin" / "python"


def make_package(folder: Path, model: str, size: int) -> Path:
    network, head = build_model(model, 10)
    write_package(
        folder,
        network.state_dict(),
        {
            "architecture": model,
            "head": head.to_dict(),
            "class_ids": [str(i) for i in range(10)],
            "class_names": [str(i) for i in range(10)],
            "image_size": size,
            "resize_size": round(size / 0.875),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
    )
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


def start_server(
    package: Path, max_batch: int, max_wait_ms: float, log: Path
) -> tuple[subprocess.Popen, int]:  # type: ignore[type-arg]
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = "sm_imgclf.runtime.serving.server"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            server,
            "--model-dir",
            str(package),
            "--port",
            str(port),
            "--max-batch",
            str(max_batch),
            "--max-wait-ms",
            str(max_wait_ms),
        ],
        stdout=log.open("w"),
    )
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as answer:
                if answer.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.1)


def forward_figures(package: Path, size: int, repeats: int = 15) -> dict[str, tuple[float, float]]:
    """Batch-1 median ms and batch-8 images/s of the bare forward on every path."""
    figures = {}
    for path in ("eager", "channels_last", "onnxruntime"):
        os.environ["SM_IMGCLF_FORWARD"] = path
        try:
            loaded = model_fn(str(package))
        except RuntimeError as error:
            print(f"  forward {path}: not measured ({error})")
            continue
        finally:
            del os.environ["SM_IMGCLF_FORWARD"]
        manifest, choice = loaded.manifest, loaded.forward
        timed = []
        for batch in (1, 8):
            images = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8)
            inputs = choice.inputs(
                normalise(images, tuple(manifest["mean"]), tuple(manifest["std"]))
            )
            seconds = []
            with torch.inference_mode():
                choice.logits(loaded.model, inputs)
                for _ in range(repeats):
                    started = time.perf_counter()
                    choice.logits(loaded.model, inputs)
                    seconds.append(time.perf_counter() - started)
            timed.append(statistics.median(seconds))
        figures[path] = (timed[0] * 1000, 8 / timed[1])
    return figures


def toolkit_figures(
    requests: int, python: Path = TOOLKIT_PYTHON, script: str = "serving_toolkit.py"
) -> dict[str, dict[str, float]] | None:
    """Rows from a benchmark run in another session's environment (the toolkits', Ray's)."""
    if not python.exists():
        print(f"  {script}: not measured (run `nox -s {python.parent.parent.name}` once)")
        return None
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rows.json"
        done = subprocess.run(
            [
                str(python),
                str(ROOT / "benchmarks" / script),
                "--requests",
                str(requests),
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            print(f"  {script}: failed ({done.stderr.strip().splitlines()[-1:]})")
            return None
        return dict(json.loads(out.read_text()))


def report(label: str, concurrency: int, rate: float, latencies: list[float]) -> None:
    p = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"  {label:<10} c={concurrency:<3} {rate:8.1f} req/s   p50 {p[49]:7.1f} ms   "
        f"p99 {p[98]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--no-toolkit", action="store_true", help="skip AWS's toolkit rows")
    args = parser.parse_args()
    body = jpeg()
    print(
        f"{args.model} at {args.size} px, {torch.get_num_threads()} CPU threads, "
        f"{args.requests} requests per setting, a 320x240 JPEG each"
    )
    with tempfile.TemporaryDirectory() as tmp:
        package = make_package(Path(tmp) / "package", args.model, args.size)
        forwards = forward_figures(package, args.size)
        for path, (ms, rate) in forwards.items():
            print(f"  forward {path:<14} batch 1 {ms:7.1f} ms   batch 8 {rate:7.1f} images/s")
        served = serve_rows(package, body, args.size, args.requests, Path(tmp))
    toolkit = None if args.no_toolkit else toolkit_figures(max(48, args.requests // 2))
    ray = None if args.no_toolkit else toolkit_figures(args.requests, RAY_PYTHON, "serving_ray.py")
    rows = {f"toolkit, {k}": v for k, v in (toolkit or {}).items()} | (ray or {})
    for label, row in rows.items():
        print(f"  {label:<41} c=1 p50 {row['c1_p50_ms']:7.1f} ms   c=8 {row['c8_rps']:6.1f} req/s")
    targets(forwards, served, toolkit)
    if ray:
        rate = next(iter(ray.values()))["c8_rps"]
        ours8 = served[("sm-imgclf", 8)][0]
        print(f"  c=8: Ray Serve {rate:.1f} req/s / sm-imgclf {ours8:.1f} = {rate / ours8:.2f}x")


def serve_rows(
    package: Path, body: bytes, size: int, requests: int, tmp: Path
) -> dict[tuple[str, int], tuple[float, list[float]]]:
    """Throughput and latencies of the raw batcher, the naive server and ours."""
    loaded = model_fn(str(package))
    image = decode_image(body, size)
    batcher = Batcher(loaded, max_batch=32, max_wait=0.005)
    results: dict[tuple[str, int], tuple[float, list[float]]] = {}
    logs = {"naive": tmp / "naive.log", "sm-imgclf": tmp / "ours.log"}
    servers = {
        "naive": start_server(package, 1, 0.0, logs["naive"]),
        "sm-imgclf": start_server(package, 32, 5.0, logs["sm-imgclf"]),
    }
    chosen = next(
        (
            line.split("forward: ", 1)[1]
            for line in logs["sm-imgclf"].read_text().splitlines()
            if "forward: " in line
        ),
        "?",
    )
    print(f"  the server's forward: {chosen}")
    try:
        for concurrency in (1, 8, 32):
            results[("raw", concurrency)] = run_load(
                lambda state: batcher.predict(Batch(image[None], 5)), concurrency, requests
            )
            for label, (_, port) in servers.items():
                results[(label, concurrency)] = run_load(
                    http_caller(port, body), concurrency, requests
                )
            for label in ("raw", "naive", "sm-imgclf"):
                report(label, concurrency, *results[(label, concurrency)])
    finally:
        for process, _ in servers.values():
            process.terminate()
    return results


def targets(
    forwards: dict[str, tuple[float, float]],
    served: dict[tuple[str, int], tuple[float, list[float]]],
    toolkit: dict[str, dict[str, float]] | None,
) -> None:
    ours8 = served[("sm-imgclf", 8)][0]
    ours1 = statistics.median(served[("sm-imgclf", 1)][1])
    best8 = max(forwards, key=lambda p: forwards[p][1])
    best1 = min(forwards, key=lambda p: forwards[p][0])
    print("targets:")
    print(
        f"  c=8: sm-imgclf {ours8:.1f} req/s / best batched forward ({best8}, "
        f"{forwards[best8][1]:.1f} images/s) = {ours8 / forwards[best8][1]:.2f}x (>= 0.8x)"
    )
    configured = next(
        (row for label, row in (toolkit or {}).items() if label.startswith("as deploy() sets")),
        None,
    )
    if configured:
        print(
            f"  c=8: sm-imgclf / toolkit as deploy() sets it ({configured['c8_rps']:.1f} "
            f"req/s) = {ours8 / configured['c8_rps']:.2f}x (>= 1.5x)"
        )
    print(
        f"  c=1: p50 sm-imgclf {ours1:.1f} ms - best batch-1 forward ({best1}, "
        f"{forwards[best1][0]:.1f} ms) = {ours1 - forwards[best1][0]:+.1f} ms (<= +5 ms)"
    )
    ours32, raw32, naive32 = (served[(k, 32)][0] for k in ("sm-imgclf", "raw", "naive"))
    print(
        f"  c=32: sm-imgclf / raw batcher = {ours32 / raw32:.2f}x, / naive = "
        f"{ours32 / naive32:.2f}x"
    )


if __name__ == "__main__":
    main()
