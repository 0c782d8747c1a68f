"""A TCP proxy that delays every byte by a fixed time each way: added latency on a
host's path to a server, where the kernel here has no ``netem`` to do it.

    python -m tests.cluster.delay_proxy LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS

It listens on 127.0.0.1 of the host it runs on (a worker host's namespace); what goes in
comes out DELAY_MS later, in order, in both directions.
"""

from __future__ import annotations

import asyncio
import sys


async def delayed_copy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
) -> None:
    loop = asyncio.get_running_loop()
    pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while data := await reader.read(65536):
            pending.put_nowait((loop.time() + delay_s, data))
        pending.put_nowait((loop.time() + delay_s, b""))

    async def send() -> None:
        while True:
            due, data = await pending.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(receive(), send())
    except (ConnectionError, OSError):
        writer.close()


async def serve(listen_port: int, upstream: str, delay_s: float) -> None:
    host, _, port = upstream.rpartition(":")

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            delayed_copy(client_r, server_w, delay_s),
            delayed_copy(server_r, client_w, delay_s),
        )
        for writer in (client_w, server_w):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, target, delay_ms = sys.argv[1:4]
    asyncio.run(serve(int(listen), target, float(delay_ms) / 1000))
