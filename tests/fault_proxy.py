"""An HTTP proxy in front of the S3 server that misbehaves on request, as S3 does in
production: 5xx, access denied, connections that hang, bodies that trickle in.

A fault is named in the object's key, so a test chooses it per image:
``fault-503`` always answers 503 SlowDown; ``fault-503x2`` answers 503 twice, then
forwards; ``fault-403`` answers 403 AccessDenied; ``fault-hang`` waits ``hang_s`` and
drops the connection; ``fault-slow`` sends the body a little at a time over ``slow_s``.
``fail_writes`` makes that many next PUTs answer 503, whatever their key.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


class FaultProxy:
    def __init__(self, upstream: str, hang_s: float = 3.0, slow_s: float = 8.0) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.fail_writes = 0
        self.requests: Counter[tuple[str, str]] = Counter()
        """(method, unquoted path) -> requests seen."""
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and ``Expect: 100-continue``

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, method: str, key: str) -> int:
        with self.lock:
            return sum(n for (m, path), n in self.requests.items() if m == method and key in path)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = unquote(urlsplit(request.path).path)
        with self.lock:
            self.requests[(request.command, path)] += 1
            seen = self.requests[(request.command, path)]
            fail_write = request.command == "PUT" and self.fail_writes > 0
            if fail_write:
                self.fail_writes -= 1
        if fail_write or ("fault-503" in path and ("fault-503x2" not in path or seen <= 2)):
            self._reply(request, 503, _s3_error("SlowDown", "Please reduce your request rate."))
        elif "fault-403" in path:
            self._reply(request, 403, _s3_error("AccessDenied", "Access Denied"))
        elif "fault-hang" in path:
            time.sleep(self.hang_s)
            request.close_connection = True
        else:
            status, headers, payload = self._forward(request, body)
            if "fault-slow" in path and request.command == "GET":
                self._trickle(request, status, headers, payload)
            else:
                self._reply(request, status, payload, headers)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            headers.pop("Expect", None)
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, payload
        finally:
            upstream.close()

    def _reply(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        try:
            request.send_response(status)
            for name, value in headers or [("Content-Type", "application/xml")]:
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        except OSError:  # the client gave up first
            request.close_connection = True

    def _trickle(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        pieces = 16
        size = max(1, -(-len(payload) // pieces))
        try:
            request.send_response(status)
            for name, value in headers:
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            for start in range(0, len(payload), size):
                request.wfile.write(payload[start : start + size])
                request.wfile.flush()
                time.sleep(self.slow_s / pieces)
        except OSError:
            request.close_connection = True
