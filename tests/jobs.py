"""Jobs sent straight to a queue (no API), and the exactly-once ledger they must keep."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from tests import image_factory as make
from tests.conftest import INPUT_BUCKET, RESULTS_BUCKET
from yoloq import keys
from yoloq.archive import ResultArchive
from yoloq.chunking import split_into_chunks
from yoloq.inputs import JobInputs
from yoloq.job_results import read_items
from yoloq.job_store import JobRecord, JobStore
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore
from yoloq.queue import ChunkQueue
from yoloq.schemas import ChunkTask, ImageRef, InferenceParams, JobStatus, ObjectLocation

SOAK_SETTINGS = {
    "YOLOQ_MAX_IMAGES_PER_JOB": "64",
    "YOLOQ_CHUNK_SOFT_LIMIT_S": "20",
    "YOLOQ_CHUNK_HARD_LIMIT_S": "30",
    # Short, so the broker's own redelivery (the backstop) acts within the soak too.
    "YOLOQ_VISIBILITY_TIMEOUT_S": "45",
    # A chunk whose message, or whose completion, a fault lost is sent again after this.
    "YOLOQ_LOST_CHUNK_AFTER_S": "30",
    # Random faults are not poison: a chunk hit twice by chance must still run.
    "YOLOQ_MAX_DELIVERIES": "10",
}
"""The soaks' settings (tests/chaos, tests/cluster): faults recovered within the run."""


def put_images(object_store: ObjectStore, n: int, prefix: str = "worker-test") -> list[ImageRef]:
    refs = []
    for i in range(n):
        key = f"{prefix}/{uuid.uuid4().hex}.jpg"
        object_store.put(INPUT_BUCKET, key, make.jpeg(200 + 40 * (i % 8), 160 + 20 * (i % 8), i))
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
    return refs


def create_job(
    job_store: JobStore,
    object_store: ObjectStore,
    model: str,
    images: list[ImageRef],
    chunk_size: int = 4,
    ttl_s: int = 3600,
    replicas: int = 0,
) -> tuple[str, list[ChunkTask]]:
    """As the API does (api.submission.enqueue), short of sending the chunks: the images
    in an input page unless the job is one chunk, then the job. Returns it and its
    chunks, for the caller to send (or, to stand for the broker losing them, not)."""
    job_id = uuid.uuid4().hex
    chunks = split_into_chunks(job_id, model, images, InferenceParams(), chunk_size)
    only_task = chunks[0] if len(chunks) == 1 else None
    if only_task is None:
        JobInputs(object_store, RESULTS_BUCKET).write_page(job_id, 0, images)
    job_store.create(
        job_id,
        tenant="tenant-a",
        total=len(images),
        chunks=len(chunks),
        chunk_size=chunk_size,
        model=model,
        params=InferenceParams(),
        results=ObjectLocation(bucket=RESULTS_BUCKET, key=keys.results_key(job_id)),
        ttl_s=ttl_s,
        only_task=only_task,
        page_images=0 if only_task else len(chunks) * chunk_size,
        replicas=replicas,
    )
    return job_id, chunks


def submit(
    job_store: JobStore,
    object_store: ObjectStore,
    queue: ChunkQueue,
    images: list[ImageRef],
    chunk_size: int = 4,
    ttl_s: int = 3600,
) -> str:
    """A job created as the API does, and its chunks sent."""
    job_id, chunks = create_job(job_store, object_store, queue.model, images, chunk_size, ttl_s)
    for chunk in chunks:
        queue.send(chunk)
    return job_id


def wait_final(job_store: JobStore, job_id: str, timeout_s: float = 120) -> JobRecord:
    def final() -> bool:
        record = job_store.get(job_id)
        return record is not None and record.public.status.is_final

    wait_until(final, timeout_s=timeout_s, what=f"job {job_id} to finish")
    record = job_store.get(job_id)
    assert record is not None
    return record


def check_ledger(
    job_store: JobStore, object_store: ObjectStore, job_id: str, images: list[ImageRef]
) -> Counter[str]:
    """Every image of a finished job has exactly one result, in Redis and in S3; returns
    the items by status. Fails on anything lost, doubled or out of place."""
    record = job_store.get(job_id)
    assert record is not None and record.public.status.is_final, record
    total = len(images)
    assert record.public.total == record.public.done == total, record.public
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    items = read_items(job_store, archive, job_id, 0, total, total)
    assert len(items) == total, "an image has no result in its part"
    assert [(i.index, i.key) for i in items] == [(n, ref.key) for n, ref in enumerate(images)]
    assert record.public.failed == sum(1 for i in items if i.status == "error")

    raw = object_store.get(RESULTS_BUCKET, keys.results_key(job_id)).decode()
    lines = [json.loads(line) for line in raw.splitlines()]
    indexes = Counter(line["index"] for line in lines)
    doubled = [index for index, n in indexes.items() if n > 1]
    assert not doubled, f"results.jsonl repeats items {doubled}"
    assert sorted(indexes) == list(range(total)), "results.jsonl misses items"
    assert ResultArchive(object_store, RESULTS_BUCKET).read_results(job_id) == items
    return Counter(i.status if i.error is None else i.error.code for i in items)


def finished_ok(job_store: JobStore, job_id: str) -> bool:
    record = job_store.get(job_id)
    return record is not None and record.public.status == JobStatus.SUCCEEDED


@dataclass
class Tally:
    """The soaks' ledger over many jobs: counted, not asserted, so the summary line can
    say how many images were lost or doubled."""

    jobs: int = 0
    images: int = 0
    lost: int = 0
    duplicated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, job_store: JobStore, object_store: ObjectStore, job_id: str, images: int) -> None:
        record = job_store.get(job_id)
        assert record is not None, f"job {job_id} is gone"
        raw = object_store.get(RESULTS_BUCKET, keys.results_key(job_id)).decode()
        lines = Counter(json.loads(line)["index"] for line in raw.splitlines())
        self.jobs += 1
        self.images += images
        self.lost += sum(1 for index in range(images) if index not in lines)
        self.duplicated += sum(n - 1 for n in lines.values()) + max(0, record.public.done - images)
        archive = ResultArchive(object_store, RESULTS_BUCKET)
        for item in read_items(job_store, archive, job_id, 0, images, images):
            self.outcomes[item.error.code if item.error else "ok"] += 1
