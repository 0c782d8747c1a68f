"""moto's S3 emulator served for S3 alone, over keep-alive connections: the S3-compatible
server the tests, the demo and the benchmarks start on loopback.

    python -m yoloq.s3_server --host 127.0.0.1 --port 9000

``python -m moto.server`` serves every AWS service moto has, and looks the service up
again for each request (listing moto's package directory on disk). Its server, werkzeug's
development server, closes the connection after every response, whatever the protocol:
http.server cannot drain a request body it did not read before the next request line. So
every request was a new TCP connection and a new server thread, on both sides: about 2.5
ms of CPU per small GET on the 2-core test machine, where the server competes with the
model for the same cores. Here moto's S3 app is made once and served by waitress, a WSGI
server that keeps HTTP/1.1 connections open (it reads each body whole first), so a
client's pooled connection is reused. The emulator itself (buckets, objects, multipart,
listing) is moto's, unchanged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import waitress
from moto.moto_server.werkzeug_app import create_backend_app

THREADS = 8
"""Requests handled at once: a worker's downloads and a job's multipart upload run in
parallel. Idle keep-alive connections hold no thread."""
CONNECTION_LIMIT = 1000
"""Open connections at once: every test process and worker keeps a pool of its own."""


def serve(host: str, port: int) -> None:
    app = create_backend_app("s3")
    # Not a line per request, nor a warning each time requests queue for a thread: the
    # benchmarks' S3 server would spend its time writing them. Errors are still logged.
    logging.getLogger("waitress").setLevel(logging.ERROR)

    def stop(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    waitress.serve(
        app,
        host=host,
        port=port,
        threads=THREADS,
        connection_limit=CONNECTION_LIMIT,
        ident=None,
        _quiet=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
