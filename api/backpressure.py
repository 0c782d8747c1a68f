"""Backpressure: refuse new work while a model's queue is full, and say when to come back.

The drain rate is measured from the workers' own counters (their heartbeats' images done),
so ``Retry-After`` follows what the workers actually achieve, not a configured guess.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

DEFAULT_RETRY_AFTER_S = 10
MAX_RETRY_AFTER_S = 300


class DrainRate:
    """Images per second, from samples of a running total over the last ``window_s``."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def observe(self, done_total: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._samples and done_total < self._samples[-1][1]:
                self._samples.clear()  # a worker restarted and its counter with it
            self._samples.append((now, done_total))
            while self._samples and now - self._samples[0][0] > self.window_s:
                self._samples.popleft()

    def images_per_s(self) -> float | None:
        with self._lock:
            if len(self._samples) < 2:
                return None
            (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 1.0 or d1 <= d0:
            return None
        return (d1 - d0) / (t1 - t0)


def retry_after_s(excess_images: int, rate: float | None) -> int:
    """Seconds until the queue has drained ``excess_images``, within sane bounds."""
    if not rate:
        return DEFAULT_RETRY_AFTER_S
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(excess_images / rate)))
