"""The hard time limit. Celery's threads pool enforces none, and a thread stuck in C code
cannot be interrupted, so a chunk still running past the limit makes the worker exit:
its supervisor restarts it and the chunk is delivered again (see YOLOQ_MAX_DELIVERIES)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

EXIT_STUCK = 70
"""Exit status of a worker stopped by the watchdog (EX_SOFTWARE)."""


def exit_stuck(overdue: list[str]) -> None:
    log.critical(
        "chunk(s) %s ran past YOLOQ_CHUNK_HARD_LIMIT_S; exiting so they are delivered again",
        ", ".join(overdue),
    )
    logging.shutdown()
    # os._exit: a stuck thread would keep a normal exit waiting forever.
    os._exit(EXIT_STUCK)


class Watchdog:
    def __init__(
        self,
        hard_limit_s: float,
        on_overdue: Callable[[list[str]], None] = exit_stuck,
        check_every_s: float = 1.0,
    ) -> None:
        self.hard_limit_s = hard_limit_s
        self.on_overdue = on_overdue
        self.check_every_s = check_every_s
        self._started: dict[int, tuple[str, float]] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    @contextmanager
    def running(self, name: str) -> Iterator[None]:
        with self._lock:
            token = self._next_id
            self._next_id += 1
            self._started[token] = (name, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                del self._started[token]

    def overdue(self) -> list[str]:
        limit = time.monotonic() - self.hard_limit_s
        with self._lock:
            return [name for name, started in self._started.values() if started < limit]

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.check_every_s):
            overdue = self.overdue()
            if overdue:
                self.on_overdue(overdue)
