"""The lost-chunk sweeper against real Redis and S3: it sends again only what is nowhere,
rebuilt from the job's inputs."""

from __future__ import annotations

import json
import time
import uuid

from tests.conftest import RESULTS_BUCKET
from tests.jobs import create_job
from workers.sweeper import (
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    restore_untracked,
    sweep_after_connection_loss,
    sweep_lost_chunks,
)
from yoloq import keys
from yoloq.archive import PartRef
from yoloq.chunking import split_into_chunks
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.schemas import (
    ChunkTask,
    ImageRef,
    InferenceParams,
    JobStatus,
    ObjectLocation,
    PlanSpec,
    PrefixSource,
)


def _store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url, f"sweep-{uuid.uuid4().hex[:8]}")


def _without_time(task: ChunkTask) -> dict[str, object]:
    return task.model_dump(exclude={"queued_at", "job_chunks"})


def test_only_a_chunk_found_nowhere_is_sent_again(
    redis_url: str, object_store: ObjectStore
) -> None:
    jobs = _store(redis_url)
    inputs = JobInputs(object_store, RESULTS_BUCKET)
    model = f"sweep-{uuid.uuid4().hex[:8]}"
    job_id = uuid.uuid4().hex
    images = [ImageRef(bucket="images", key=f"{n}.jpg") for n in range(8)]
    chunks = split_into_chunks(job_id, model, images, InferenceParams(conf=0.3), 2, "low")
    inputs.write_page(job_id, 0, images)
    jobs.create(
        job_id,
        tenant="t",
        total=8,
        chunks=4,
        chunk_size=2,
        model=model,
        params=InferenceParams(conf=0.3),
        priority="low",
        results=ObjectLocation(bucket="results", key="r"),
        ttl_s=600,
        page_images=8,
    )
    # Chunk 0: recorded (as complete_chunk.lua marks it).
    jobs.redis.hset(jobs.keys.job_chunks_done(job_id), "0", PartRef(1, 10).encode())
    waiting = keys.queue_for_chunk(model, "low", 1)  # chunk 1: waiting in its queue
    jobs.redis.lpush(waiting, json.dumps({"headers": {"shadow": f"yoloq.infer_chunk[{job_id}:1]"}}))
    jobs.start_chunk(chunks[2], "w@host")  # chunk 2: held by a worker
    jobs.redis.zadd(jobs.keys.workers(), {"w@host": time.time()})
    sent: list[ChunkTask] = []
    try:
        assert sweep_lost_chunks(jobs, inputs, sent.append, lost_after_s=0) == 1
        # Chunk 3, nowhere: rebuilt from the input page as it was sent.
        assert [_without_time(task) for task in sent] == [_without_time(chunks[3])]
        # One sweep at a time: the next caller finds the lock held.
        assert sweep_lost_chunks(jobs, inputs, sent.append, lost_after_s=0) == 0
        # A finished job leaves the sweep's list.
        jobs.redis.delete(jobs.keys.sweep_lock())
        jobs.finish(job_id, JobStatus.PARTIAL)
        assert sweep_lost_chunks(jobs, inputs, sent.append, lost_after_s=0) == 0
        assert jobs.active_jobs(created_before=time.time()) == []
    finally:
        jobs.redis.delete(waiting)


def test_a_planning_job_whose_planner_stopped_gets_a_step_again(
    redis_url: str, object_store: ObjectStore
) -> None:
    jobs = _store(redis_url)
    inputs = JobInputs(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    spec = PlanSpec(
        source=PrefixSource(bucket="images", prefix="p/"),
        most=100,
        buckets=["images"],
        uploads_bucket="uploads",
        tenant="t",
    )
    jobs.create(
        job_id,
        tenant="t",
        total=0,
        chunks=0,
        chunk_size=2,
        model="m-plan",
        params=InferenceParams(),
        results=ObjectLocation(bucket="results", key="r"),
        ttl_s=600,
        page_images=4,
        plan=spec,
    )
    # A page counted (chunks 0 and 1) whose chunks the planner never sent: the sweeper
    # leaves them to the planner, and sends it a step.
    inputs.write_page(job_id, 0, [ImageRef(bucket="images", key=f"p/{n}.jpg") for n in range(4)])
    assert jobs.plan_page(job_id, "m-plan", 0, 4, 2, "p/3.jpg") == "planned"
    steps: list[tuple[str, ...]] = []
    sent: list[ChunkTask] = []

    def send_plan(job: str, model: str, priority: str, after_s: float) -> None:
        steps.append((job, model, priority))

    assert sweep_lost_chunks(jobs, inputs, sent.append, 60, send_plan) == 0
    assert steps == []  # too recent to be looked at
    jobs.redis.delete(jobs.keys.sweep_lock())
    jobs.redis.hset(jobs.keys.job(job_id), "planner_beat", time.time() - 120)
    jobs.redis.zadd(jobs.keys.active_jobs(), {job_id: time.time() - 120})
    assert sweep_lost_chunks(jobs, inputs, sent.append, 60, send_plan) == 0
    assert steps == [(job_id, "m-plan", "normal")] and sent == []


def test_after_a_reconnect_jobs_older_than_the_loss_are_swept_at_once(
    redis_url: str, object_store: ObjectStore
) -> None:
    jobs = _store(redis_url)
    inputs = JobInputs(object_store, RESULTS_BUCKET)
    images = [ImageRef(bucket="images", key=f"{n}.jpg") for n in range(4)]
    model = f"sweep-{uuid.uuid4().hex[:8]}"
    before, chunks = create_job(jobs, object_store, model, images, chunk_size=2)
    lost_at = time.time()
    create_job(jobs, object_store, model, images, chunk_size=2)  # submitted since: not lost
    running_here = {keys.chunk_id(before, 0)}  # its in-flight listing died with the master
    sent: list[ChunkTask] = []

    swept = sweep_after_connection_loss(
        jobs, inputs, sent.append, lost_at, "reconnect", lambda: running_here
    )
    assert swept == 1
    assert [_without_time(task) for task in sent] == [_without_time(chunks[1])]
    # The other workers reconnecting just after leave it to the first.
    assert sweep_after_connection_loss(jobs, inputs, sent.append, lost_at, "reconnect") is None
    # A worker starting looks for itself, as its last run may have stopped with the
    # connection (it finds the same chunk: sent.append queues nothing).
    again = sweep_after_connection_loss(
        jobs, inputs, sent.append, lost_at, "start", lambda: running_here
    )
    assert again == 1 and _without_time(sent.pop()) == _without_time(chunks[1])
    # The periodic sweep still waits for the job to be lost_after_s old.
    assert sweep_lost_chunks(jobs, inputs, sent.append, lost_after_s=600) == 0
    assert len(sent) == 1


def test_a_chunk_taken_by_a_worker_that_died_before_listing_it_is_sent_again(
    redis_url: str, object_store: ObjectStore
) -> None:
    """kombu lists the message as unacknowledged, the worker dies before it lists the
    chunk in flight: the chunk is sent again once, and kombu's copy is taken away so
    that the visibility timeout does not bring it back too."""
    jobs = _store(redis_url)
    inputs = JobInputs(object_store, RESULTS_BUCKET)
    images = [ImageRef(bucket="images", key=f"{n}.jpg") for n in range(8)]
    model = f"sweep-{uuid.uuid4().hex[:8]}"
    job_id, chunks = create_job(jobs, object_store, model, images, chunk_size=2)
    jobs.track_inflight("w@alive", chunks[0])
    jobs.redis.zadd(jobs.keys.workers(), {"w@alive": time.time()})
    jobs.redis.hset(jobs.keys.job_chunks_done(job_id), "3", PartRef(1, 10).encode())
    long_ago, tags = time.time() - 60, {}
    for chunk, delivered in ((0, long_ago), (1, long_ago), (2, time.time()), (3, long_ago)):
        tag = f"tag-{uuid.uuid4().hex}"
        message = {"headers": {"shadow": keys.chunk_task_name(job_id, chunk)}}
        jobs.redis.hset(KOMBU_UNACKED, tag, json.dumps([message, "", "q"]))
        jobs.redis.zadd(KOMBU_UNACKED_INDEX, {tag: delivered})
        tags[chunk] = tag
    sent: list[ChunkTask] = []
    try:
        # Chunk 0 is listed by a live worker, 2 was taken just now, 3 is counted.
        assert restore_untracked(jobs, inputs, sent.append) == 1
        assert [_without_time(task) for task in sent] == [_without_time(chunks[1])]
        assert jobs.redis.hget(KOMBU_UNACKED, tags[1]) is None
        assert jobs.redis.zscore(KOMBU_UNACKED_INDEX, tags[1]) is None
        assert restore_untracked(jobs, inputs, sent.append) == 0  # taken once
        assert all(jobs.redis.hexists(KOMBU_UNACKED, tags[c]) for c in (0, 2, 3))
    finally:
        jobs.redis.hdel(KOMBU_UNACKED, *tags.values())
        jobs.redis.zrem(KOMBU_UNACKED_INDEX, *tags.values())
