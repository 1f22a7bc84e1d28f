"""A local endpoint behind SageMaker's container contract: ``GET /ping``, ``POST /invocations``.

``python -m sm_imgclf.runtime.serving.server --model-dir DIR [--port 8080]`` serves a
model package with the same handler SageMaker's PyTorch container runs, groups
concurrent requests into one forward pass, and answers every bad request with
a 4xx (503 when its queue is full) instead of failing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sm_imgclf.contracts.deploy import PAYLOAD_LIMIT
from sm_imgclf.runtime.serving.handler import RequestError, input_fn, model_fn, output_fn

SAGEMAKER_PAYLOAD_LIMIT = PAYLOAD_LIMIT
DRAIN_LIMIT = 64 * 1024 * 1024


class EndpointServer(ThreadingHTTPServer):
    """The HTTP server; the model loads in the background and ``/ping`` says when it is ready."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        model_dir: str,
        *,
        max_batch: int,
        max_wait: float,
        max_payload: int,
        queue_size: int,
    ) -> None:
        super().__init__(address, _Handler)
        self.model_dir, self.max_payload = model_dir, max_payload
        self.batch_options: dict[str, Any] = {
            "max_batch": max_batch,
            "max_wait": max_wait,
            "queue_size": queue_size,
        }
        self.model: Any = None
        self.batcher: Any = None
        self.load_error: str | None = None
        self.decode_threads = decode_threads()
        self.decoders = threading.BoundedSemaphore(self.decode_threads)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is not a server fault; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)

    def load(self) -> None:
        """Load the model package; on failure record why and stop serving."""
        from sm_imgclf.runtime.serving.batching import Batcher

        try:
            self.model = model_fn(self.model_dir)
            self.batcher = Batcher(self.model, **self.batch_options)
            forward = self.model.forward
            print(
                f"model loaded from {self.model_dir}; forward: {forward.path} ({forward.reason})",
                flush=True,
            )
            print(
                f"threads: the forward uses {_torch_threads()}, {self.decode_threads} "
                "request(s) decode at once",
                flush=True,
            )
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            print(f"cannot load the model: {self.load_error}", file=sys.stderr, flush=True)
            threading.Thread(target=self.shutdown, daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body
    # would wait for the client's delayed ACK (about 40 ms per request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the job log

    def do_GET(self) -> None:
        if self.path != "/ping":
            return self._reply(404, _error("Not found: use GET /ping or POST /invocations."))
        ready = self.server.batcher is not None
        self._reply(200 if ready else 503, b"" if ready else _error("The model is loading."))

    def do_POST(self) -> None:
        try:
            body = self._body()
            if self.path.split("?")[0] != "/invocations":
                raise RequestError("Not found: use POST /invocations.", status=404)
            if self.server.batcher is None:
                raise RequestError("The model is still loading; retry shortly.", status=503)
            with self.server.batcher.decoding(), self.server.decoders:
                batch = input_fn(body, self.headers.get("Content-Type", ""), self.server.model)
            prediction = self.server.batcher.predict(batch)
            accept = self.headers.get("Accept") or "application/json"
            answer = output_fn(prediction, accept)
            media = accept.split(";")[0] if accept.split(";")[0] != "*/*" else "application/json"
            self._reply(200, answer, media)
        except RequestError as error:
            self._reply(error.status, _error(str(error)))
        except Exception as error:
            traceback.print_exc()
            self._reply(500, _error(f"Internal error: {type(error).__name__}: {error}"))

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError("A Content-Length header is required.", status=411)
        if int(length) > self.server.max_payload:
            self._drain(int(length))
            self.close_connection = True
            raise RequestError(
                f"The payload of {int(length):,} bytes exceeds the limit of "
                f"{self.server.max_payload:,}.",
                status=413,
            )
        return self.rfile.read(int(length))

    def _drain(self, length: int) -> None:
        # Read (up to a bound) what the client is sending, so that it receives our 413
        # instead of a broken pipe; beyond the bound the connection is simply closed.
        remaining = min(length, DRAIN_LIMIT)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _reply(self, status: int, body: bytes, media: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def decode_threads() -> int:
    """Requests decoded at once: the cores the forward's threads leave, and at least one.

    Every connection has its own thread; unbounded, a burst of them would decode
    all at once and take the cores from the forward pass that every one of them
    waits for. ``SM_IMGCLF_DECODE_THREADS`` sets the number.
    """
    setting = os.environ.get("SM_IMGCLF_DECODE_THREADS", "").strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    return max(1, (os.cpu_count() or 1) - _torch_threads())


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def serve(
    model_dir: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_batch: int = 32,
    max_wait: float = 0.005,
    max_payload: int = SAGEMAKER_PAYLOAD_LIMIT,
    queue_size: int = 128,
) -> EndpointServer:
    """Start serving in background threads and return the server (``shutdown()`` stops it)."""
    server = EndpointServer(
        (host, port),
        model_dir,
        max_batch=max_batch,
        max_wait=max_wait,
        max_payload=max_payload,
        queue_size=queue_size,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=server.load, daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted or until the model fails to load."""
    parser = argparse.ArgumentParser(description="Serve an sm-imgclf model package.")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-payload", type=int, default=SAGEMAKER_PAYLOAD_LIMIT)
    parser.add_argument("--queue-size", type=int, default=128)
    parser.add_argument(
        "--stop-after",
        type=float,
        default=None,
        help="seconds after which the server stops by itself",
    )
    args = parser.parse_args(argv)
    server = EndpointServer(
        (args.host, args.port),
        args.model_dir,
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000,
        max_payload=args.max_payload,
        queue_size=args.queue_size,
    )
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    threading.Thread(target=_load_then_expire, args=(server, args.stop_after), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 1 if server.load_error else 0


def _load_then_expire(server: EndpointServer, stop_after: float | None) -> None:
    """Load the model; then, if asked, stop ``stop_after`` seconds after serving began."""
    server.load()
    if stop_after is not None and server.load_error is None:
        timer = threading.Timer(stop_after, _expire, (server,))
        timer.daemon = True
        timer.start()


def _expire(server: EndpointServer) -> None:
    print("stopping: the endpoint's delete_after time has come", flush=True)
    server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
