"""The job store against the real Redis server: idempotent completion, TTLs, heartbeats."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from yoloq.archive import PartRef
from yoloq.job_store import ChunkCompletion, ChunkStart, JobGone, JobStore
from yoloq.results import DetectItem, ItemError, ResultItem
from yoloq.schemas import (
    ChunkTask,
    DeadLetter,
    ImageRef,
    InferenceParams,
    ItemErrorCode,
    JobStatus,
    ObjectLocation,
    WorkerHeartbeat,
)


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url, f"js-{uuid.uuid4().hex[:8]}")


def _job(store: JobStore, total: int, chunks: int, ttl_s: int = 600) -> str:
    job_id = uuid.uuid4().hex
    store.create(
        job_id,
        tenant="t",
        total=total,
        chunks=chunks,
        chunk_size=4,
        model="m",
        params=InferenceParams(conf=0.4),
        results=ObjectLocation(bucket="r", key=f"jobs/{job_id}/results.jsonl"),
        ttl_s=ttl_s,
    )
    return job_id


def _items(start: int, n: int, errors: int = 0) -> list[ResultItem]:
    items: list[ResultItem] = []
    for index in range(start, start + n):
        if index - start < errors:
            error = ItemError(code=ItemErrorCode.EMPTY, message="empty")
            items.append(
                DetectItem(index=index, bucket="b", key=f"{index}", status="error", error=error)
            )
        else:
            items.append(DetectItem(index=index, bucket="b", key=f"{index}", status="ok"))
    return items


def _complete(
    store: JobStore, job_id: str, chunk: int, items: list[ResultItem], delivery: int = 1
) -> ChunkCompletion:
    """Count a chunk as a worker does, keeping its items in Redis (as for a job of one
    chunk) so they can be read back here."""
    task = _task(job_id, chunk)
    return store.complete_chunk(task, PartRef(delivery, 100), items, keep_items=True)


def test_create_and_read_back(store: JobStore) -> None:
    job_id = _job(store, total=5, chunks=2)
    record = store.get(job_id)
    assert record is not None
    assert record.public.status == JobStatus.QUEUED
    assert (record.public.total, record.public.done, record.public.failed) == (5, 0, 0)
    assert record.params.conf == 0.4
    assert record.chunks == 2
    assert store.get(uuid.uuid4().hex) is None


def test_a_chunk_delivered_twice_counts_once(store: JobStore) -> None:
    job_id = _job(store, total=6, chunks=2)
    first = _complete(store, job_id, 0, _items(0, 4, errors=1))
    again = _complete(store, job_id, 0, _items(0, 4, errors=1))
    assert first.newly_counted and not again.newly_counted
    assert (again.chunks_done, again.chunks_total, again.job_complete) == (1, 2, False)
    record = store.get(job_id)
    assert record is not None
    assert (record.public.done, record.public.failed) == (4, 1)
    last = _complete(store, job_id, 1, _items(4, 2))
    assert last.job_complete
    record = store.get(job_id)
    assert record is not None
    assert (record.public.done, record.public.failed) == (6, 1)


def test_items_window_marks_unfinished_items(store: JobStore) -> None:
    job_id = _job(store, total=6, chunks=2)
    _complete(store, job_id, 1, _items(3, 3))
    window = store.items(job_id, 0, 6)
    assert window[:3] == [None, None, None]
    assert [item.index for item in window[3:] if item] == [3, 4, 5]


def _task(job_id: str, chunk: int) -> ChunkTask:
    return ChunkTask(
        job_id=job_id,
        model="m",
        chunk=chunk,
        start=chunk,
        images=[ImageRef(bucket="bkt", key=f"{chunk}.jpg")],
        params=InferenceParams(),
        queued_at=time.time(),
    )


def test_running_then_final_once(store: JobStore) -> None:
    job_id = _job(store, total=1, chunks=1)
    assert store.start_chunk(_task(job_id, 0), "w1") == ChunkStart("run", 1)
    record = store.get(job_id)
    assert record is not None and record.public.status == JobStatus.RUNNING
    assert record.public.started_at is not None
    assert store.finish(job_id, JobStatus.PARTIAL) == JobStatus.PARTIAL
    # A second finisher (a redelivered last chunk) cannot change the outcome.
    assert store.finish(job_id, JobStatus.SUCCEEDED) == JobStatus.PARTIAL
    store.start_chunk(_task(job_id, 0), "w1")
    record = store.get(job_id)
    assert record is not None and record.public.status == JobStatus.PARTIAL
    assert record.public.finished_at is not None


def test_start_chunk_counts_deliveries_and_lists_the_chunk_in_flight(store: JobStore) -> None:
    job_id = _job(store, total=2, chunks=2)
    assert store.start_chunk(_task(job_id, 0), "w1").deliveries == 1
    assert store.start_chunk(_task(job_id, 0), "w2").deliveries == 2
    assert store.start_chunk(_task(job_id, 1), "w1").deliveries == 1
    assert sorted(task.chunk for task in store.inflight("w1")) == [0, 1]
    assert 0 < store.redis.ttl(store.keys.job_deliveries(job_id)) <= 600
    _complete(store, job_id, 0, _items(0, 1))
    assert store.start_chunk(_task(job_id, 0), "w1") == ChunkStart("counted", 0)
    store.untrack_inflight("w1", _task(job_id, 1))
    assert [task.chunk for task in store.inflight("w1")] == [0]
    store.cancel(job_id, "m")
    assert store.start_chunk(_task(job_id, 1), "w1") == ChunkStart("cancelled", 0)
    assert store.start_chunk(_task(uuid.uuid4().hex, 0), "w1") == ChunkStart("gone", 0)


def test_claim_inflight_only_from_a_dead_worker_and_only_once(store: JobStore) -> None:
    job_id = _job(store, total=2, chunks=2)
    store.start_chunk(_task(job_id, 0), "alive")
    store.start_chunk(_task(job_id, 1), "dead")
    beat = WorkerHeartbeat(
        name="alive",
        device="cpu",
        models=[],
        warmed=True,
        threads=2,
        images_done=0,
        max_batch=1,
        batch_sizes={},
        started_at=datetime.now(tz=UTC),
        last_seen=datetime.now(tz=UTC),
    )
    store.heartbeat(beat, ttl_s=60)
    long_ago = datetime.fromtimestamp(time.time() - 100, tz=UTC)
    store.heartbeat(beat.model_copy(update={"name": "dead", "last_seen": long_ago}), ttl_s=60)
    store.redis.delete(store.keys.worker("dead"))  # its heartbeat expired
    assert store.silent_workers(30) == ["dead"]
    assert store.claim_inflight("alive") == []
    assert [task.chunk for task in store.claim_inflight("dead")] == [1]
    assert store.claim_inflight("dead") == []
    assert store.silent_workers(30) == []  # looked at once, then dropped
    # A restarted worker takes its own leftovers although its old heartbeat still lives.
    assert [task.chunk for task in store.claim_inflight("alive", even_if_alive=True)] == [0]
    assert store.inflight("alive") == store.inflight("dead") == []
    assert [w.name for w in store.live_workers(30)] == ["alive"]


def test_dead_letters_newest_first(store: JobStore) -> None:
    for chunk in range(3):
        store.add_dead_letter(
            DeadLetter(
                job_id="j",
                chunk=chunk,
                deliveries=3,
                dead_lettered_at=datetime.now(tz=UTC),
                worker="w",
                task=_task("j", chunk),
            ),
            keep=2,
        )
    assert [letter.chunk for letter in store.dead_letters()] == [2, 1]
    assert store.dead_letter_count() == 2


def test_results_expire_with_their_job(store: JobStore) -> None:
    job_id = _job(store, total=2, chunks=1, ttl_s=120)
    _complete(store, job_id, 0, _items(0, 2))
    for key in (
        store.keys.job(job_id),
        store.keys.job_items(job_id),
        store.keys.job_chunks_done(job_id),
    ):
        assert 0 < int(store.redis.ttl(key)) <= 120


def test_completing_a_vanished_job_raises(store: JobStore) -> None:
    with pytest.raises(JobGone):
        _complete(store, uuid.uuid4().hex, 0, _items(0, 1))


def test_queued_images_count_down_exactly_once(store: JobStore) -> None:
    job_id = _job(store, total=6, chunks=2)
    assert store.queued_images() == {"m": 6}
    _complete(store, job_id, 0, _items(0, 4))
    _complete(store, job_id, 0, _items(0, 4))  # redelivered
    assert store.queued_images() == {"m": 2}
    _complete(store, job_id, 1, _items(4, 2))
    assert store.queued_images() == {"m": 0}


def test_heartbeats_age_out(store: JobStore) -> None:
    now = datetime.now(tz=UTC)
    beat = WorkerHeartbeat(
        name="gpu0@host",
        device="cuda:0",
        models=[],
        warmed=True,
        threads=2,
        max_batch=4,
        batch_sizes={1: 2},
        images_done=3,
        started_at=now,
        last_seen=now,
    )
    store.heartbeat(beat, ttl_s=10)
    assert [w.name for w in store.live_workers(30)] == ["gpu0@host"]
    store.redis.zadd(store.keys.workers(), {"gpu0@host": time.time() - 60})
    assert store.live_workers(30) == []
    store.forget_worker("gpu0@host")
    assert not store.redis.exists(store.keys.worker("gpu0@host"))


def test_the_first_delivery_counted_names_the_part_and_redis_keeps_no_items(
    store: JobStore,
) -> None:
    job_id = _job(store, total=4, chunks=2)
    task = _task(job_id, 0)
    first = store.complete_chunk(task, PartRef(2, 300), _items(0, 2))
    second = store.complete_chunk(task, PartRef(3, 310), _items(0, 2))
    assert first.newly_counted and first.part_counted == PartRef(2, 300)
    assert not second.newly_counted and second.part_counted == PartRef(2, 300)
    # Items stay in their part: only a job of one chunk keeps them in Redis.
    assert store.redis.exists(store.keys.job_items(job_id)) == 0
    assert store.counted_parts(job_id, [0, 1]) == {0: PartRef(2, 300)}
    # A question (no images) counts nothing, even for a chunk not counted yet.
    asked = store.complete_chunk(_task(job_id, 1), PartRef(0, 0), [])
    assert not asked.newly_counted and asked.part_counted is None
    assert store.counted_chunks(job_id) == {0}


def test_an_ended_job_without_its_markers_counts_nothing_more(store: JobStore) -> None:
    job_id = _job(store, total=4, chunks=2)
    _complete(store, job_id, 0, _items(0, 2))
    _complete(store, job_id, 1, _items(2, 2))
    store.finish(job_id, JobStatus.SUCCEEDED)
    # Before its markers go, a redelivered chunk still sees it counted (and finalises).
    assert store.start_chunk(_task(job_id, 1), "w1").verdict == "counted"
    store.forget_chunks(job_id)
    assert store.start_chunk(_task(job_id, 1), "w1").verdict == "ended"
    late = _complete(store, job_id, 1, _items(2, 2))
    assert not late.newly_counted and late.cancelled
    record = store.get(job_id)
    assert record is not None and record.public.done == 4
