"""The lost-chunk sweeper against real Redis: it sends again only what is nowhere."""

from __future__ import annotations

import json
import time
import uuid

from workers.sweeper import sweep_lost_chunks
from yoloq import keys
from yoloq.chunking import split_into_chunks
from yoloq.job_store import JobStore
from yoloq.schemas import ChunkTask, ImageRef, InferenceParams, JobStatus, ObjectLocation


def test_only_a_chunk_found_nowhere_is_sent_again(redis_url: str) -> None:
    jobs = JobStore.from_url(redis_url, f"sweep-{uuid.uuid4().hex[:8]}")
    model = f"sweep-{uuid.uuid4().hex[:8]}"
    job_id = uuid.uuid4().hex
    images = [ImageRef(bucket="images", key=f"{n}.jpg") for n in range(4)]
    chunks = split_into_chunks(job_id, model, images, InferenceParams(), 1)
    jobs.create(
        job_id,
        tenant="t",
        total=4,
        chunks=4,
        model=model,
        params=InferenceParams(),
        results=ObjectLocation(bucket="results", key="r"),
        ttl_s=600,
        tasks=chunks,
    )
    jobs.complete_chunk(job_id, model, 0, [])  # chunk 0: recorded
    waiting = keys.queue_for_chunk(model, "normal", 1)  # chunk 1: waiting in its queue
    jobs.redis.lpush(waiting, json.dumps({"headers": {"shadow": f"yoloq.infer_chunk[{job_id}:1]"}}))
    jobs.start_chunk(chunks[2], "w@host")  # chunk 2: held by a worker
    jobs.redis.zadd(jobs.keys.workers(), {"w@host": time.time()})
    sent: list[ChunkTask] = []
    try:
        assert sweep_lost_chunks(jobs, sent.append, lost_after_s=0) == 1
        assert sent == [chunks[3]]  # chunk 3: nowhere
        # One sweep at a time: the next caller finds the lock held.
        assert sweep_lost_chunks(jobs, sent.append, lost_after_s=0) == 0
        # A finished job leaves the sweep's list.
        jobs.redis.delete(jobs.keys.sweep_lock())
        jobs.finish(job_id, JobStatus.PARTIAL)
        assert sweep_lost_chunks(jobs, sent.append, lost_after_s=0) == 0
        assert jobs.active_jobs(created_before=time.time()) == []
    finally:
        jobs.redis.delete(waiting)
