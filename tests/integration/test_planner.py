"""The planner against real Redis and S3: resumption after a crash at any point of a
page, cancel while planning, and the queue's limit. Chunks are collected, not run."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.conftest import INPUT_BUCKET, RESULTS_BUCKET
from workers.planner import Planner, plan_step
from yoloq import keys
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.schemas import (
    ChunkTask,
    InferenceParams,
    JobStatus,
    ObjectLocation,
    PlanSpec,
    PrefixSource,
)

IMAGES = 21
CHUNK_SIZE = 2
PAGE_IMAGES = 4  # two chunks a page: 6 pages, the last of one image


class Crash(Exception):
    pass


@dataclass
class Sent:
    """What the planner sent. Chunks go to their queue as the broker holds them (a
    message naming the chunk), where a resumed planner looks before sending again."""

    jobs: JobStore
    chunks: list[ChunkTask] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    crash_on_chunk: int | None = None

    def chunk(self, task: ChunkTask) -> None:
        if task.chunk == self.crash_on_chunk:
            self.crash_on_chunk = None
            raise Crash(f"killed while sending chunk {task.chunk}")
        self.chunks.append(task)
        message = {"headers": {"shadow": keys.chunk_task_name(task.job_id, task.chunk)}}
        queue = keys.queue_for_chunk(task.model, task.priority, task.chunk)
        self.jobs.redis.lpush(queue, json.dumps(message))


@pytest.fixture(scope="module")
def prefix(object_store: ObjectStore) -> str:
    prefix = f"planner/{uuid.uuid4().hex}/"
    for n in range(IMAGES):
        object_store.put(INPUT_BUCKET, f"{prefix}{n:03d}.jpg", b"listed, never read here")
    object_store.put(INPUT_BUCKET, f"{prefix}007.json", b"not an image")
    return prefix


def _job(jobs: JobStore, prefix: str, most: int = 1000) -> str:
    job_id = uuid.uuid4().hex
    spec = PlanSpec(
        source=PrefixSource(bucket=INPUT_BUCKET, prefix=prefix),
        most=most,
        buckets=[INPUT_BUCKET],
        uploads_bucket="uploads",
        tenant="t",
    )
    jobs.create(
        job_id,
        tenant="t",
        total=0,
        chunks=0,
        chunk_size=CHUNK_SIZE,
        model=f"plan-{job_id[:8]}",
        params=InferenceParams(),
        results=ObjectLocation(bucket=RESULTS_BUCKET, key="r"),
        ttl_s=600,
        page_images=PAGE_IMAGES,
        plan=spec,
    )
    return job_id


def _planner(
    jobs: JobStore, object_store: ObjectStore, sent: Sent, queue_limit: int | None = None
) -> Planner:
    return Planner(
        jobs=jobs,
        store=object_store,
        inputs=JobInputs(object_store, RESULTS_BUCKET),
        send_chunk=sent.chunk,
        send_step=lambda job, model, priority, after_s: sent.steps.append(after_s),
        finalize=sent.finalized.append,
        queue_limit=queue_limit,
        name="planner@test",
    )


def _plan_to_the_end(planner: Planner, job_id: str, sent: Sent) -> None:
    for _ in range(50):
        try:
            plan_step(planner, job_id)
        except Crash:
            planner.jobs.redis.delete(planner.jobs.keys.job_planner(job_id))  # it died
        if planner.jobs.plan_state(job_id) is None:
            return
    raise AssertionError("planning did not end")


@pytest.fixture
def jobs(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url, f"plan-{uuid.uuid4().hex[:8]}")


def test_a_prefix_is_planned_in_pages_each_chunk_sent_once(
    jobs: JobStore, object_store: ObjectStore, prefix: str
) -> None:
    sent = Sent(jobs)
    job_id = _job(jobs, prefix)
    _plan_to_the_end(_planner(jobs, object_store, sent), job_id, sent)
    record = jobs.get(job_id)
    assert record is not None and record.public.status == JobStatus.QUEUED
    assert (record.public.total, record.chunks) == (IMAGES, 11)
    assert record.public.planned_at is not None and not record.public.truncated
    assert [task.chunk for task in sent.chunks] == list(range(11))
    listed = [ref.key for task in sent.chunks for ref in task.images]
    assert listed == [f"{prefix}{n:03d}.jpg" for n in range(IMAGES)]
    assert all(task.start == task.chunk * CHUNK_SIZE for task in sent.chunks)
    assert jobs.queued_images_for(record.model) == IMAGES
    # STEP_PAGES pages a step, then the next step is sent; none after the end.
    assert sent.steps == [0.0] and sent.finalized == []


@pytest.mark.parametrize("crash_on_chunk", [0, 5, 9])
def test_a_planner_killed_while_sending_a_page_resumes_without_sending_twice(
    jobs: JobStore, object_store: ObjectStore, prefix: str, crash_on_chunk: int
) -> None:
    sent = Sent(jobs, crash_on_chunk=crash_on_chunk)
    job_id = _job(jobs, prefix)
    _plan_to_the_end(_planner(jobs, object_store, sent), job_id, sent)
    chunks = Counter(task.chunk for task in sent.chunks)
    assert sorted(chunks) == list(range(11)) and set(chunks.values()) == {1}
    record = jobs.get(job_id)
    assert record is not None and (record.public.total, record.chunks) == (IMAGES, 11)


def test_a_planner_killed_before_counting_a_page_lists_it_again(
    jobs: JobStore, object_store: ObjectStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(jobs)
    job_id = _job(jobs, prefix)
    counted = jobs.plan_page
    calls = Counter[str]()

    def dies_on_the_third_page(*args: object) -> str:
        calls["pages"] += 1
        if calls["pages"] == 3:
            raise Crash("killed after writing page 2, before counting it")
        return counted(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs, "plan_page", dies_on_the_third_page)
    _plan_to_the_end(_planner(jobs, object_store, sent), job_id, sent)
    assert [task.chunk for task in sent.chunks] == list(range(11))
    record = jobs.get(job_id)
    assert record is not None and record.public.total == IMAGES


def test_a_job_cancelled_while_planning_stops_listing(
    jobs: JobStore, object_store: ObjectStore, prefix: str
) -> None:
    sent = Sent(jobs)
    job_id = _job(jobs, prefix)
    planner = _planner(jobs, object_store, sent)
    plan_step(planner, job_id)  # four pages
    record = jobs.get(job_id)
    assert record is not None
    assert jobs.cancel(job_id, record.model) == JobStatus.CANCELLED
    plan_step(planner, job_id)
    assert len(sent.chunks) == 8 and sent.steps == [0.0]
    after = jobs.get(job_id)
    assert after is not None and after.public.status == JobStatus.CANCELLED
    assert jobs.queued_images_for(record.model) == 0


def test_planning_waits_while_the_queue_is_at_its_limit(
    jobs: JobStore, object_store: ObjectStore, prefix: str
) -> None:
    sent = Sent(jobs)
    job_id = _job(jobs, prefix)
    planner = _planner(jobs, object_store, sent, queue_limit=6)
    plan_step(planner, job_id)
    # Two pages (8 images) take the queue past 6: the step stops and asks to be sent
    # again in a while.
    assert len(sent.chunks) == 4 and sent.steps == [2.0]


def test_a_limit_truncates_and_a_job_done_while_listed_is_finalised_by_the_planner(
    jobs: JobStore, object_store: ObjectStore, prefix: str
) -> None:
    sent = Sent(jobs)
    job_id = _job(jobs, prefix, most=3)
    _plan_to_the_end(_planner(jobs, object_store, sent), job_id, sent)
    record = jobs.get(job_id)
    assert record is not None
    assert (record.public.total, record.chunks, record.public.truncated) == (3, 2, True)
    assert sent.finalized == []

    # Every chunk counted before planning ends: the planner finalises the job.
    sent = Sent(jobs)
    job_id = _job(jobs, prefix, most=2)
    jobs.redis.hset(jobs.keys.job_chunks_done(job_id), "0", "1:10")
    _plan_to_the_end(_planner(jobs, object_store, sent), job_id, sent)
    assert sent.finalized == [job_id]
