"""What a worker process holds while it runs: built once at start, used by every task."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from workers.batcher import Batcher
from workers.device import Device
from workers.inference import BatchOutput, InferenceInput
from workers.serving import ServedModel
from workers.watchdog import Watchdog
from yoloq.archive import ResultArchive
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.schemas import ChunkTask
from yoloq.settings import Settings


@dataclass
class WorkerStats:
    """Counters the heartbeat reports; updated from the task and batcher threads."""

    images_done: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    """How many batches of each size the model has run."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count_images(self, n: int) -> None:
        with self._lock:
            self.images_done += n

    def count_batch(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_sizes[size] += 1

    def batch_histogram(self) -> dict[int, int]:
        with self._lock:
            return dict(sorted(self.batch_sizes.items()))


@dataclass
class WorkerRuntime:
    settings: Settings
    jobs: JobStore
    store: ObjectStore
    archive: ResultArchive
    device: Device
    models: dict[str, ServedModel]
    """The model versions it serves, by id (the ``model`` of their chunks). Replaced
    whole, never changed in place, when an alias it follows moves."""
    batcher: Batcher[InferenceInput, BatchOutput]
    io_pool: ThreadPoolExecutor
    staging_slots: threading.BoundedSemaphore
    """One per image between its download and the end of its batch, across all chunks:
    holding many chunks (for batches of one-image jobs) must not mean holding all their
    images decoded in memory."""
    stats: WorkerStats
    watchdog: Watchdog
    name: str
    """The worker's Celery hostname: names its heartbeat and its in-flight list."""
    concurrency: int
    """Chunks it holds at once (Celery threads)."""
    on_job_finished: Callable[[str], None] = lambda job_id: None
    """Called once a job's final status and files are written (sends its webhook)."""
    requeue: Callable[[ChunkTask], None] = lambda task: None
    """Sends a chunk back to its queue (a dead worker's, found in its in-flight list)."""
    send_plan: Callable[[str, str, str, float], None] = lambda job, model, priority, after: None
    """Sends a planning step of a job (``ChunkQueue.send_plan``)."""
    started_at: float = field(default_factory=time.time)

    @property
    def inputs(self) -> JobInputs:
        return JobInputs(self.store, self.settings.results_bucket)

    @property
    def max_batch(self) -> int:
        return max((model.max_batch for model in self.models.values()), default=1)


_current: WorkerRuntime | None = None


def set_current(runtime: WorkerRuntime) -> None:
    global _current
    _current = runtime


def current() -> WorkerRuntime:
    if _current is None:
        raise RuntimeError("the worker runtime is not set up: start workers with `yoloq worker`")
    return _current
