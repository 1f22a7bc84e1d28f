"""AWS's inference toolkit and TorchServe: their default workers against the ones deploy() sets.

One resnet18 model package at 224 px (random weights: the cost of a forward
does not depend on them), served by ``sagemaker_pytorch_serving_container`` as
a SageMaker endpoint runs it, twice in one run: with the container's defaults
(one worker per vCPU, each with torch's default threads), and with the
environment ``deploy()`` sets for the instance type given (``ml.m5.large``,
2 vCPUs, by default). Prints throughput and p50 at concurrency 1 and 8, and the
ratio. Needs the toolkits (``nox -s toolkits`` installs them) and Java 17:

    .nox/toolkits/bin/python benchmarks/serving_toolkit.py [--requests 96] [--instance ml.m5.large]

``--json FILE`` also writes the figures, for ``benchmarks/serving.py``'s one table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import sm_imgclf as smi
from sm_imgclf.backends.local.processes import free_port
from sm_imgclf.runtime.images import resize_size
from sm_imgclf.runtime.models import build_model
from sm_imgclf.runtime.package import write_package

BIN = Path(sys.executable).parent
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"


def package(folder: Path) -> Path:
    model, head = build_model("resnet18", 10)
    write_package(
        folder / "model",
        model.state_dict(),
        {
            "architecture": "resnet18",
            "source": "torchvision",
            "head": head.to_dict(),
            "class_ids": [str(i) for i in range(10)],
            "class_names": [str(i) for i in range(10)],
            "image_size": 224,
            "resize_size": resize_size(224),
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "weights": "none",
            "trainable": ["all"],
            "hyperparameters": {},
            "metrics": {},
        },
    )
    return folder / "model"


def deploy_environment(instance: str) -> dict[str, str]:
    session = smi.SageMakerSession(
        "bench", role="arn:aws:iam::123456789012:role/R", region="us-east-1"
    )
    spec = smi.DeploySpec(
        "bench",
        "s3://bench/model.tar.gz",
        role=session.role,
        image_uri=IMAGE,
        instance_type=instance,
    )
    requests = session.backend.deploy_requests(spec)  # type: ignore[attr-defined]
    return dict(requests["CreateModel"]["PrimaryContainer"]["Environment"])


def serve(model: Path, environment: dict[str, str], workdir: Path) -> tuple[str, Any]:
    base = workdir / "base"
    shutil.copytree(model, base / "model")
    for name in ("tmp", "logs"):
        (base / name).mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env |= environment | {
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "TEMP": str(base / "tmp"),
        "LOG_LOCATION": str(base / "logs"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    code = (
        "import sagemaker_pytorch_serving_container.torchserve as ts\n"
        f"ts.TS_CONFIG_FILE = {str(base / 'ts.properties')!r}\n"
        "from sagemaker_pytorch_serving_container.serving import main\nmain()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/invocations"
    for _ in range(300):
        try:
            post(url, jpeg())
            return url, process
        except OSError:
            time.sleep(1)
    raise RuntimeError("the toolkit's server never answered")


def jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def post(url: str, body: bytes) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, body, {"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()
    return time.perf_counter() - started


def load(url: str, concurrency: int, count: int) -> tuple[float, float]:
    body = jpeg()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda _: post(url, body), range(count)))
    return count / (time.perf_counter() - started), statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--instance", default="ml.m5.large")
    parser.add_argument(
        "--threads",
        type=int,
        action="append",
        default=[],
        help="also one worker with this many threads (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    args = parser.parse_args()
    ours = deploy_environment(args.instance)
    settings = {
        "container defaults": {
            k: v
            for k, v in ours.items()
            if k not in ("SAGEMAKER_MODEL_SERVER_WORKERS", "OMP_NUM_THREADS")
        },
        f"as deploy() sets for {args.instance}": ours,
    }
    for threads in args.threads:
        settings[f"1 worker x {threads} thread(s)"] = ours | {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "OMP_NUM_THREADS": str(threads),
        }
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        model = package(Path(folder))
        for label, environment in settings.items():
            with tempfile.TemporaryDirectory() as workdir:
                url, process = serve(model, environment, Path(workdir))
                try:
                    load(url, 8, 16)  # warm-up
                    figures[label] = [load(url, c, args.requests) for c in (1, 8)]
                finally:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
    workers = ours.get("SAGEMAKER_MODEL_SERVER_WORKERS", "default")
    threads = ours.get("OMP_NUM_THREADS", "default")
    print(
        f"AWS inference toolkit + TorchServe, resnet18 at 224 px, {os.cpu_count()} CPUs here, "
        f"{args.requests} requests per setting (ours: {workers} worker(s) x {threads} threads)"
    )
    for label, rows in figures.items():
        (_, p50_1), (rate8, p50_8) = rows
        print(
            f"  {label:<34} c=1 p50 {p50_1:7.1f} ms   c=8 {rate8:6.1f} req/s (p50 {p50_8:7.1f} ms)"
        )
    default, configured = list(figures.values())[:2]
    print(f"  c=8 throughput, ours / defaults: {configured[1][0] / default[1][0]:.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    label: {"c1_p50_ms": rows[0][1], "c8_rps": rows[1][0]}
                    for label, rows in figures.items()
                }
            )
        )


if __name__ == "__main__":
    main()
