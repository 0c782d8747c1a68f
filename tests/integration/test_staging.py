"""A chunk through the pipeline without Celery: the images waiting between download and
the model stay within the worker's staging slots, and a failed image gives its slot back.

Real S3 (the session's server), the real model and a real batcher; the batch function is
wrapped only to count what it is handed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, INPUT_BUCKET, RESULTS_BUCKET
from workers.batcher import Batcher
from workers.device import parse_device
from workers.inference import BatchOutput, InferenceInput, batch_key
from workers.model import Detector, WarmUp
from workers.pipeline import record_chunk, run_chunk
from workers.runtime import WorkerRuntime, WorkerStats
from workers.serving import ModelSource, ServedModel
from workers.watchdog import Watchdog
from yoloq import keys
from yoloq.archive import ResultArchive
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.results import detections_of
from yoloq.schemas import ChunkTask, ImageRef, InferenceParams, JobStatus, ObjectLocation
from yoloq.settings import Settings

SLOTS = 3


class CountingModel:
    """The real detector, noting the most images staged (prepared) and not yet through
    the model at any one time."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.lock = threading.Lock()
        self.prepared = 0
        self.finished = 0
        self.most_waiting = 0

    def prepare(self, *args: object, **kwargs: object) -> object:
        with self.lock:
            self.prepared += 1
            self.most_waiting = max(self.most_waiting, self.prepared - self.finished)
        return self.detector.prepare(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:  # the rest is the detector's
        return getattr(self.detector, name)

    def run_batch(self, items: list[InferenceInput]) -> list[BatchOutput]:
        time.sleep(0.1)  # a slow model: downloads race ahead of it
        found = self.detector.predict_prepared([i.image for i in items], items[0].params)
        with self.lock:
            self.finished += len(items)
        now = time.perf_counter()
        return [BatchOutput(d, 0.1, len(items), now) for d in found]


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return Detector(model_path, parse_device("cpu"))


@pytest.fixture
def runtime(
    detector: Detector, object_store: ObjectStore, job_store: JobStore
) -> Iterator[tuple[WorkerRuntime, CountingModel]]:
    counting = CountingModel(detector)
    source = ModelSource("m", "m", None, detector.weights, "pt")
    warm = WarmUp(max_batch=2, per_image_s={}, seconds=0.0, imgsz=detector.default_imgsz)
    batcher: Batcher[InferenceInput, BatchOutput] = Batcher(
        counting.run_batch, max_batch=2, max_delay_s=0.005, batch_key=batch_key
    ).start()
    runtime = WorkerRuntime(
        settings=Settings(),
        jobs=job_store,
        store=object_store,
        archive=ResultArchive(object_store, RESULTS_BUCKET),
        device=detector.device,
        models={"m": ServedModel(source, counting, warm)},  # type: ignore[arg-type]
        batcher=batcher,
        io_pool=ThreadPoolExecutor(8, thread_name_prefix="test-io"),
        staging_slots=threading.BoundedSemaphore(SLOTS),
        stats=WorkerStats(),
        watchdog=Watchdog(60),
        name="staging-test",
        concurrency=4,
    )
    yield runtime, counting
    batcher.stop()
    runtime.io_pool.shutdown()


def _task(refs: list[ImageRef]) -> ChunkTask:
    return ChunkTask(
        job_id="staging",
        chunk=0,
        start=0,
        images=refs,
        params=InferenceParams(),
        model="m",
        queued_at=time.time(),
    )


def _all_slots_free(runtime: WorkerRuntime) -> bool:
    taken = [runtime.staging_slots.acquire(blocking=False) for _ in range(SLOTS)]
    for took in taken:
        if took:
            runtime.staging_slots.release()
    return all(taken)


def test_images_waiting_for_the_model_stay_within_the_staging_slots(
    runtime: tuple[WorkerRuntime, CountingModel], object_store: ObjectStore
) -> None:
    worker, counting = runtime
    sample = sorted((FIXTURES / "samples").glob("*.jpg"))[0].read_bytes()
    refs = []
    for i in range(10):
        object_store.put(INPUT_BUCKET, f"staging/{i}.jpg", sample, "image/jpeg")
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=f"staging/{i}.jpg"))
    items = run_chunk(worker, _task(refs), time.monotonic() + 60)
    assert [item.status for item in items] == ["ok"] * 10
    assert [item.index for item in items] == list(range(10))
    assert all(detections_of(item) for item in items)
    assert counting.finished == 10
    # Unbounded, all ten would be waiting by the second batch.
    assert counting.most_waiting == SLOTS
    assert _all_slots_free(worker)


def test_images_that_fail_give_their_slots_back(
    runtime: tuple[WorkerRuntime, CountingModel], object_store: ObjectStore
) -> None:
    worker, counting = runtime
    object_store.put(INPUT_BUCKET, "staging/not-an-image.jpg", b"plain text", "image/jpeg")
    refs = [ImageRef(bucket=INPUT_BUCKET, key=f"staging/missing-{i}.jpg") for i in range(5)]
    refs.append(ImageRef(bucket=INPUT_BUCKET, key="staging/not-an-image.jpg"))
    started = time.monotonic()
    items = run_chunk(worker, _task(refs), time.monotonic() + 60)
    assert [item.error.code for item in items if item.error] == ["not_found"] * 5 + ["not_an_image"]
    assert time.monotonic() - started < 30  # more images than slots, and none stuck
    assert counting.prepared == 0
    assert _all_slots_free(worker)


def test_a_one_image_job_cancelled_while_it_ran_records_nothing(
    runtime: tuple[WorkerRuntime, CountingModel], object_store: ObjectStore, job_store: JobStore
) -> None:
    """Its chunk is run, then the job is cancelled before the count: the count refuses it
    (no earlier check is made for a job of one chunk, which writes no part), so nothing is
    counted, kept or archived."""
    worker, _ = runtime
    sample = sorted((FIXTURES / "samples").glob("*.jpg"))[0].read_bytes()
    object_store.put(INPUT_BUCKET, "staging/cancelled.jpg", sample, "image/jpeg")
    ref = ImageRef(bucket=INPUT_BUCKET, key="staging/cancelled.jpg")
    job_id = uuid.uuid4().hex
    task = _task([ref]).model_copy(update={"job_id": job_id, "job_chunks": 1})
    job_store.create(
        job_id,
        tenant="tenant-a",
        total=1,
        chunks=1,
        chunk_size=1,
        model="m",
        params=InferenceParams(),
        results=ObjectLocation(bucket=RESULTS_BUCKET, key=keys.results_key(job_id)),
        ttl_s=600,
        only_task=task,
    )
    start = job_store.start_chunk(task, worker.name)
    items = run_chunk(worker, task, time.monotonic() + 60)
    assert [item.status for item in items] == ["ok"]
    assert job_store.cancel(job_id, "m") == JobStatus.CANCELLED
    outcome = record_chunk(worker, task, start.deliveries, items)
    assert (outcome.newly_counted, outcome.images, outcome.job_complete) == (False, 0, False)
    record = job_store.get(job_id)
    assert record is not None
    assert (record.public.status, record.public.done) == (JobStatus.CANCELLED, 0)
    assert job_store.items(job_id, 0, 1) == [None]
    assert object_store.get_if_exists(RESULTS_BUCKET, keys.results_key(job_id)) is None
