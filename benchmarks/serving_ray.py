"""A model package under Ray Serve, started as AWS's Ray Serve SageMaker image starts it.

Run by ``benchmarks/serving.py`` in the environment ``nox -s rayserve`` made
(Ray 2.57, as the image pins it). It writes the package ``serving.py`` measures,
starts ``ray start --head``, ``serve start`` and ``serve run config.yaml`` with
the package and its ``code/`` on ``PYTHONPATH``, then sends one 320x240 JPEG per
request to the application's route ``/`` (what the image's adapter forwards
``/invocations`` to) at concurrency 1 and 8. Prints, or writes with ``--json``,
c=1 p50 and c=8 requests/s.

    python benchmarks/serving_ray.py [--size 224] [--requests 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from serving import jpeg, make_package, run_load

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(package: Path, log: Path) -> tuple[subprocess.Popen, int, dict[str, str]]:  # type: ignore[type-arg]
    gcs, port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{package}:{package / 'code'}",
        "RAY_ADDRESS": f"127.0.0.1:{gcs}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    head = [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--include-dashboard=False"]
    subprocess.run([*head, "--disable-usage-stats"], env=env, check=True, capture_output=True)
    serve = [str(BIN / "serve"), "start", "--http-host=127.0.0.1", f"--http-port={port}"]
    subprocess.run(serve, env=env, check=True, capture_output=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "serve"), "run", str(package / "config.yaml")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port, env


def wait_ready(port: int, body: bytes, process: subprocess.Popen, log: Path) -> None:  # type: ignore[type-arg]
    while process.poll() is None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", data=body, headers={"Content-Type": "image/jpeg"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(1)
    raise SystemExit(f"serve run exited: {log.read_text()[-2000:]}")


def caller(port: int, body: bytes):  # type: ignore[no-untyped-def]
    def call(state: dict) -> None:
        connection = state.setdefault("c", http.client.HTTPConnection("127.0.0.1", port))
        headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
        connection.request("POST", "/", body, headers)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    body = jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        package = make_package(Path(tmp) / "model", args.model, args.size)
        process, port, env = start(package, Path(tmp) / "serve.log")
        try:
            wait_ready(port, body, process, Path(tmp) / "serve.log")
            _, latencies = run_load(caller(port, body), 1, args.requests // 2)
            rate, _ = run_load(caller(port, body), 8, args.requests)
        finally:
            process.terminate()
            process.wait()
            subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True)
    row = {"c1_p50_ms": statistics.median(latencies), "c8_rps": rate}
    if args.json:
        args.json.write_text(json.dumps({"ray serve (AWS's image's way)": row}))
    print(f"ray serve: c=1 p50 {row['c1_p50_ms']:.1f} ms   c=8 {row['c8_rps']:.1f} req/s")


if __name__ == "__main__":
    main()
