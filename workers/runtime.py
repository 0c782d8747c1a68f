"""What a worker process holds while it runs: built once at start, used by every task."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from workers.model import Detector
from yoloq.archive import ResultArchive
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.settings import Settings


@dataclass
class WorkerRuntime:
    settings: Settings
    jobs: JobStore
    store: ObjectStore
    archive: ResultArchive
    detector: Detector
    io_pool: ThreadPoolExecutor
    started_at: float = field(default_factory=time.time)
    images_done: int = 0
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def count_images(self, n: int) -> None:
        with self._count_lock:
            self.images_done += n


_current: WorkerRuntime | None = None


def set_current(runtime: WorkerRuntime) -> None:
    global _current
    _current = runtime


def current() -> WorkerRuntime:
    if _current is None:
        raise RuntimeError("the worker runtime is not set up: start workers with `yoloq worker`")
    return _current
