"""Planning a prefix or manifest job: list its images a page at a time and send the
chunks of each page as it goes, so a job of any size is taken at once and starts running
while it is still listed.

One step (a Celery task, ``keys.PLAN_TASK``, on a worker of the job's model) lists up to
``STEP_PAGES`` pages and sends the next step; between steps the worker's threads and
other jobs take their turns. Each page of images goes to S3 first (``yoloq.inputs``),
then ``plan_page.lua`` counts it (images, chunks, the cursor after it), then its chunks
are sent and the job's ``chunks_sent`` says so. A planner killed anywhere resumes from the
cursor of the last counted page: a page written and not counted is listed again; a page
counted and not sent has its chunks sent by the next step (those not queued already), so
no chunk is planned twice. One planner at a time holds the job's lock; a step whose
planner died is sent again by the sweeper once ``planner_beat`` is older than
``YOLOQ_LOST_CHUNK_AFTER_S``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from workers.pipeline import finalize_job
from workers.runtime import WorkerRuntime
from workers.sweeper import chunks_somewhere, send_missing
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore, PlanState
from yoloq.listing import list_next
from yoloq.object_store import ObjectAccessDenied, ObjectNotFound, ObjectStore
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)

STEP_PAGES = 4
LOCK_S = 120.0
BACKPRESSURE_WAIT_S = 2.0


@dataclass
class Planner:
    """What planning needs of a worker."""

    jobs: JobStore
    store: ObjectStore
    inputs: JobInputs
    send_chunk: Callable[[ChunkTask], None]
    send_step: Callable[[str, str, str, float], None]
    """(job id, model, priority, after how many seconds)"""
    finalize: Callable[[str], None]
    queue_limit: int | None
    name: str

    @classmethod
    def of(cls, runtime: WorkerRuntime) -> Planner:
        return cls(
            jobs=runtime.jobs,
            store=runtime.store,
            inputs=runtime.inputs,
            send_chunk=runtime.requeue,
            send_step=runtime.send_plan,
            finalize=lambda job_id: finalize_job(runtime, job_id),
            queue_limit=runtime.settings.queue_limit,
            name=runtime.name,
        )


def plan_step(planner: Planner, job_id: str) -> None:
    holder = f"{planner.name}:{uuid.uuid4().hex}"
    if not planner.jobs.take_planner_lock(job_id, holder, LOCK_S):
        return  # another planner is on it; if it dies, the sweeper sends a step again
    try:
        for _ in range(STEP_PAGES):
            state = planner.jobs.plan_state(job_id)
            if state is None:
                return  # planned, cancelled or expired
            _send_unsent(planner, state)
            if _backpressured(planner, state):
                log.info("job %s: planning waits for the queue of %s", job_id, state.record.model)
                _next_step(planner, state, BACKPRESSURE_WAIT_S)
                return
            if not _plan_page(planner, state):
                return
            planner.jobs.take_planner_lock(job_id, holder, LOCK_S)
        state = planner.jobs.plan_state(job_id)
        if state is not None:
            _next_step(planner, state, 0)
    finally:
        planner.jobs.release_planner_lock(job_id, holder)


def _next_step(planner: Planner, state: PlanState, after_s: float) -> None:
    record = state.record
    planner.send_step(record.public.id, record.model, record.priority, after_s)


def _backpressured(planner: Planner, state: PlanState) -> bool:
    """The API's rule for new jobs: list no further while the model's queue is at its
    limit."""
    limit = planner.queue_limit
    return limit is not None and planner.jobs.queued_images_for(state.record.model) >= limit


def _send_unsent(planner: Planner, state: PlanState) -> None:
    """Chunks of a page counted by a planner that died before sending them."""
    record = state.record
    if state.chunks_sent >= record.chunks:
        return
    somewhere = chunks_somewhere(planner.jobs, {record.model}) or set()
    unsent = range(state.chunks_sent, record.chunks)
    sent = send_missing(planner.jobs, planner.inputs, planner.send_chunk, record, unsent, somewhere)
    log.warning("job %s: sent chunks %s its last planner counted, not sent", record.public.id, sent)
    planner.jobs.chunks_sent(record.public.id, record.chunks)


def _plan_page(planner: Planner, state: PlanState) -> bool:
    """List, store, count and send one page; False once planning has ended."""
    record = state.record
    job_id = record.public.id
    left = state.spec.most - record.public.total
    try:
        if left <= 0:
            more = list_next(planner.store, state.spec, state.cursor, 1).images
            return _finish(planner, job_id, truncated=bool(more))
        listed = list_next(planner.store, state.spec, state.cursor, min(record.page_images, left))
    except (ObjectNotFound, ObjectAccessDenied) as error:
        log.error("job %s: its images can no longer be listed (%s); planning stops", job_id, error)
        return _finish(planner, job_id, truncated=True)
    if listed.images:
        page = (listed.images, listed.invalid)
        first = record.chunks
        count = -(-len(listed.images) // record.chunk_size)
        planner.inputs.write_page(job_id, state.pages, *page)
        verdict = planner.jobs.plan_page(
            job_id, record.model, state.pages, len(listed.images), count, listed.cursor
        )
        if verdict != "planned":
            log.info("job %s: page %d not planned (%s)", job_id, state.pages, verdict)
            return False
        for chunk in range(first, first + count):
            planner.send_chunk(planner.inputs.chunk_task(record, chunk, page))
        planner.jobs.chunks_sent(job_id, first + count)
    if listed.exhausted or len(listed.images) >= left:
        truncated = not listed.exhausted and bool(
            list_next(planner.store, state.spec, listed.cursor, 1).images
        )
        return _finish(planner, job_id, truncated)
    return True


def _finish(planner: Planner, job_id: str, truncated: bool) -> bool:
    status, complete = planner.jobs.finish_planning(job_id, truncated)
    log.info("job %s planned (%s%s)", job_id, status, ", truncated" if truncated else "")
    if complete:
        planner.finalize(job_id)  # every chunk ran while it was listed
    return False
