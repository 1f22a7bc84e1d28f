"""The local endpoint under fuzzed payloads, sustained load, and hostile requests."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers.figures import FIGURES, scale
from sm_imgclf.backends.local import serving as local_serving

pytestmark = pytest.mark.reliability
TYPES = [
    "image/jpeg",
    "image/png",
    "application/x-image",
    "application/x-npy",
    "application/json",
    "text/plain",
    "application/octet-stream",
    "",
    "image/gif",
    "application/json; charset=utf-8",
    "multipart/form-data",
    "IMAGE/PNG",
]


@pytest.fixture(scope="module")
def endpoint(trained_package: tuple) -> Iterator[dict[str, Any]]:
    session, job = trained_package
    with job.deploy("reliability") as client:
        state = session.backend.describe_endpoint("reliability")
        yield {"client": client, "port": int(state["port"]), "pid": int(state["pid"])}


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    return local_serving._request(port, method, path, body, headers or {}, timeout=60)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def image_bytes(kind: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buffer, kind)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda v: json.dumps({"instances": v}).encode(), json_values),
    st.builds(
        lambda n, k: json.dumps({"instances": [{"b64": "AAAA" * n}], "top_k": k}).encode(),
        st.integers(0, 50),
        st.integers(-5, 20) | st.text(max_size=3),
    ),
    st.builds(
        lambda a: npy(a),
        st.sampled_from(
            [
                np.zeros((8, 8, 3), np.uint8),
                np.zeros((2, 5, 5, 3), np.uint8),
                np.zeros((4,), np.float64),
                np.zeros((3, 3), np.int16),
                np.zeros((0, 4, 4, 3), np.uint8),
                np.full((6, 6, 3), np.nan, np.float32),
            ]
        ),
    ),
    st.builds(lambda cut: image_bytes("PNG")[:cut], st.integers(0, 200)),
    st.builds(lambda cut: image_bytes("JPEG")[:cut], st.integers(0, 600)),
    st.just(image_bytes("PNG")),
    st.just(image_bytes("JPEG", (5, 3000))),
)


def test_fuzzed_payloads_never_cause_a_server_error(endpoint: dict[str, Any]) -> None:
    port, pid = endpoint["port"], endpoint["pid"]
    statuses: dict[int, int] = {}
    before = rss_mb(pid)
    count = scale(10_000, 800)

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        body=bodies,
        content_type=st.sampled_from(TYPES) | st.text(max_size=30),
        accept=st.sampled_from(["application/json", "application/x-npy", "*/*", "text/html", ""]),
    )
    def fuzz(body: bytes, content_type: str, accept: str) -> None:
        headers = {"Content-Type": content_type, "Accept": accept}
        headers = {k: v for k, v in headers.items() if v.isprintable() and v.isascii()}
        status, answer = request(port, "POST", "/invocations", body, headers)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500 or status == 503, (status, answer[:300], content_type, body[:80])
        if sum(statuses.values()) % 250 == 0:
            assert request(port, "GET", "/ping")[0] == 200

    fuzz()
    after = rss_mb(pid)
    FIGURES["endpoint fuzzing"] = {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "5xx": sum(v for k, v in statuses.items() if k >= 500),
        "rss_mb_before": round(before),
        "rss_mb_after": round(after),
    }
    assert request(port, "GET", "/ping")[0] == 200
    assert after - before < 150, (before, after)


def test_load_at_concurrency_32(endpoint: dict[str, Any]) -> None:
    port, pid = endpoint["port"], endpoint["pid"]
    seconds = scale(60, 10)
    body = image_bytes("JPEG", (48, 48))
    latencies: list[float] = []
    errors: list[str] = []
    memory = [rss_mb(pid)]
    deadline = time.monotonic() + seconds
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection.request(
                    "POST", "/invocations", body=body, headers={"Content-Type": "image/jpeg"}
                )
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException) as error:
                ok, answer = False, None
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    errors.append(repr(error))
            with lock:
                latencies.append(time.perf_counter() - started)
                if not ok and answer is not None:
                    errors.append(f"status {answer.status}")
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        memory.append(rss_mb(pid))
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    FIGURES["load c=32"] = {
        "seconds": seconds,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(p99, 1),
        "rss_mb_start": round(memory[0]),
        "rss_mb_peak": round(max(memory)),
        "rss_mb_end": round(memory[-1]),
    }
    assert not errors, errors[:5]
    assert max(memory[len(memory) // 2 :]) - memory[len(memory) // 2] < 100  # flat


def test_payload_limit_and_loopback_only(endpoint: dict[str, Any]) -> None:
    port = endpoint["port"]
    status, _ = request(
        port, "POST", "/invocations", b"\0" * (7 * 2**20), {"Content-Type": "image/png"}
    )
    assert status == 413
    assert request(port, "GET", "/ping")[0] == 200
    listening = [
        c
        for c in psutil.Process(endpoint["pid"]).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    outward = _outward_address()
    if outward is not None:  # a machine with only loopback has nothing else to try
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=2).close()
    FIGURES["endpoint security"] = {"oversize_status": status, "listens_on": "127.0.0.1"}


def _outward_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def test_urls_in_requests_are_never_fetched(endpoint: dict[str, Any]) -> None:
    hits: list[str] = []

    class Bait(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(image_bytes("PNG"))

        def log_message(self, *args: object) -> None:
            pass

    bait = HTTPServer(("127.0.0.1", 0), Bait)
    threading.Thread(target=bait.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{bait.server_address[1]}/secret.png"
    try:
        for body in (
            {"instances": [{"url": url}]},
            {"instances": [url]},
            {"instances": [{"s3": "s3://bucket/key.png"}]},
        ):
            status, _ = request(
                endpoint["port"],
                "POST",
                "/invocations",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            assert 400 <= status < 500
    finally:
        bait.shutdown()
    assert hits == []
    FIGURES["url fetching"] = {"attempts": 3, "fetched": len(hits)}


def test_model_files_load_with_weights_only(trained_package: tuple, tmp_path: Any) -> None:
    import pickle
    import shutil

    from sm_imgclf._archive import safe_extract
    from sm_imgclf.runtime.serving.handler import model_fn

    _, job = trained_package
    package = safe_extract(job.model_uri.removeprefix("file://"), tmp_path / "package")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (shutil.copy, (str(package / "manifest.json"), str(marker)))

    (package / "model.pth").write_bytes(pickle.dumps({"fc.weight": Payload()}))
    with pytest.raises(Exception):  # noqa: B017 - torch raises its own unpickling error
        model_fn(str(package))
    assert not marker.exists()
    FIGURES["weights_only"] = {"malicious pickle executed": marker.exists()}
