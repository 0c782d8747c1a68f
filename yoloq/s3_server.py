"""moto's S3 emulator served for S3 alone, over keep-alive connections: the S3-compatible
server the tests, the demo and the benchmarks start on loopback.

    python -m yoloq.s3_server --host 127.0.0.1 --port 9000

``python -m moto.server`` serves every AWS service moto has. For each request it looks
the service up again (listing moto's package directory on disk) and, speaking HTTP/1.0,
closes the connection, so every request is a new TCP connection and a new thread. That
was about 2.5 ms of CPU per small GET on the 2-core test machine, the larger part of the
S3 server's share in ``bench/throughput.py``: the server competes with the model for the
same cores. Here the S3 app is made once and the handler speaks HTTP/1.1, so a client's
pooled connection is served by one thread for as long as it stays open. The emulator
itself (buckets, objects, multipart, listing) is moto's, unchanged.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Not a line per request (errors are still logged): the benchmarks' S3 server
        would spend its time writing them."""


def serve(host: str, port: int) -> None:
    app = create_backend_app("s3")
    server = make_server(host, port, app, threaded=True, request_handler=KeepAliveHandler)
    # A connection's thread must not keep the process alive when it is told to stop.
    server.daemon_threads = True  # type: ignore[attr-defined]

    def stop(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
