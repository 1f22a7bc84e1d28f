"""Local endpoints: the serving program in a process of its own, one per endpoint."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from sm_imgclf._archive import safe_extract
from sm_imgclf._params import bad_value, parse_duration
from sm_imgclf.backends.local.processes import alive, free_port
from sm_imgclf.contracts.deploy import PAYLOAD_LIMIT, DeploySpec
from sm_imgclf.errors import BackendError, EndpointError

STATE = "endpoint.json"


def deploy(folder: Path, spec: DeploySpec, *, timeout: float = 120.0) -> dict[str, Any]:
    """Extract the package, start the server, and wait until ``/ping`` answers 200."""
    if (folder / STATE).exists() and alive(json.loads((folder / STATE).read_text())["pid"]):
        raise BackendError(
            f"A local endpoint named {spec.name!r} is running. Delete it or choose another name.",
            name=spec.name,
        )
    package = package_path(spec.model_uri)
    safe_extract(package, folder / "model")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sm_imgclf.runtime.serving.server",
        "--model-dir",
        str(folder / "model"),
        "--port",
        str(port),
        "--max-batch",
        str(spec.max_batch),
        "--max-wait-ms",
        str(spec.max_wait_ms),
    ]
    delete_after = None
    if spec.delete_after is not None:
        delete_after = parse_duration("delete_after", spec.delete_after)
        command += ["--stop-after", str(delete_after)]
    with (folder / "server.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | spec.container_environment(),
            start_new_session=True,
        )
    state: dict[str, Any] = {"pid": process.pid, "port": port, "model_uri": spec.model_uri}
    (folder / STATE).write_text(json.dumps(state))
    _wait_ready(folder, process, port, timeout)
    if delete_after is not None:  # the server's clock starts once it serves
        state["delete_at"] = time.time() + delete_after
        (folder / STATE).write_text(json.dumps(state))
    return state


def _wait_ready(folder: Path, process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / "server.log").read_text(errors="replace").splitlines()[-10:]
            raise BackendError(
                "The local endpoint stopped before it was ready:\n" + "\n".join(tail)
            )
        try:
            if _request(port, "GET", "/ping", None, {}, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise BackendError(f"The local endpoint did not answer /ping within {timeout:.0f}s.")


def invoke(folder: Path, body: bytes, content_type: str, accept: str) -> bytes:
    """POST ``body`` to the endpoint's ``/invocations``."""
    state = describe(folder)
    try:
        status, answer = _request(
            int(state["port"]),
            "POST",
            "/invocations",
            body,
            {"Content-Type": content_type, "Accept": accept},
            timeout=60,
        )
    except OSError as error:
        raise EndpointError(f"The local endpoint did not answer: {error}", 0) from None
    if status != 200:
        detail = answer.decode(errors="replace")
        message = json.loads(detail).get("error", detail) if detail.startswith("{") else detail
        raise EndpointError(f"The endpoint answered {status}: {message}", status)
    return answer


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    timeout: float,
) -> tuple[int, bytes]:
    # http.client, not urllib: a loopback endpoint must never go through HTTP(S)_PROXY.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def describe(folder: Path) -> dict[str, Any]:
    """Return the endpoint's state; raise if there is no running endpoint."""
    try:
        state: dict[str, Any] = json.loads((folder / STATE).read_text())
    except FileNotFoundError:
        raise BackendError(f"No local endpoint named {folder.name!r}.") from None
    running = alive(int(str(state["pid"])))
    # The server's clock started a moment before deploy() saw it ready and wrote delete_at.
    expired = state.get("delete_at") is not None and time.time() >= state["delete_at"] - 5.0
    state["status"] = "InService" if running else "Deleted" if expired else "Failed"
    state["max_payload_bytes"] = PAYLOAD_LIMIT  # the local server takes what SageMaker's does
    state["forward"] = _forward_line(folder / "server.log")
    return state


def _forward_line(log: Path) -> str | None:
    """The forward path the server's log says it chose."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((line.split("; forward: ", 1)[1] for line in lines if "; forward: " in line), None)


def delete(folder: Path) -> None:
    """Stop the server process and remove the endpoint's files."""
    import shutil

    if not (folder / STATE).exists():
        return
    pid = int(json.loads((folder / STATE).read_text())["pid"])
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not alive(pid):
                break
            time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


def package_path(uri: str) -> Path:
    """The local file of a ``file://`` or plain-path model package URI."""
    parts = urlsplit(uri)
    path = Path(url2pathname(parts.path)) if parts.scheme == "file" else Path(uri)
    if parts.scheme not in ("", "file") or not path.is_file():
        raise bad_value("model_uri", "a local model.tar.gz (file:// URI or path)", uri)
    return path
