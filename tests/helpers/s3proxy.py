"""A small HTTP proxy in front of an S3 server that adds latency and injects faults.

Real S3 answers each request after tens of milliseconds, which a local moto
server does not; the proxy restores that wait (``delay``) so that parallelism
can be measured honestly, and can answer chosen requests with a throttling
error or drop them (``fault``) to test retries and resumption.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}

# fault(method, path) -> None to forward, an int status to refuse with, or "drop".
Fault = Callable[[str, str], "int | str | None"]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # Clients killed mid-request (the point of some tests) are not proxy faults.
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class S3Proxy:
    """Forward to ``upstream`` from ``http://127.0.0.1:<port>``; use as a context manager."""

    def __init__(self, upstream: str, *, delay: float = 0.0, fault: Fault | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.fault = fault
        self.requests = 0
        self.lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> S3Proxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.requests += 1
                if proxy.delay:
                    time.sleep(proxy.delay)
                verdict = proxy.fault(self.command, self.path) if proxy.fault else None
                if verdict == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(verdict, int):
                    self._reply(verdict, [("Content-Type", "application/xml")], SLOW_DOWN)
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                kept = [
                    (k, v)
                    for k, v in response.getheaders()
                    if k.lower() not in _HOP | {"content-length"}
                ]
                self._reply(response.status, kept, data)

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler
