"""Finding chunks the broker lost, and sending them again.

kombu's Redis transport takes a message with BRPOP and only then records it as
unacknowledged. A worker killed in between, or Redis dying then, loses the message: it is
in no queue, not unacknowledged, and no worker listed it in flight, so neither requeuing
nor the visibility timeout brings it back. The soak found one in about 1,200 chunks
across 20 kills.

So one worker at a time (holding a lock) looks at the jobs submitted at least
``YOLOQ_LOST_CHUNK_AFTER_S`` ago that have not finished. A chunk that is not counted, not
held by a worker, not unacknowledged and not waiting in a queue is sent again from the
job's inputs (the task itself for a job of one chunk, else its page of images in S3,
``yoloq.inputs``). Places are read in the order a chunk moves through them
(queue, then held, then counted), so a chunk moving on while it looks is still seen; one
moving back (redelivered) may be sent needlessly, which only makes a duplicate, and
duplicates are recorded once. With a long backlog the queues are not read (it would cost
too much) and the sweep waits for the backlog to shrink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

import redis

from workers import metrics
from yoloq import keys
from yoloq.inputs import JobInputs
from yoloq.job_store import JobRecord, JobStore
from yoloq.schemas import ChunkTask, ImageRef, JobStatus

log = logging.getLogger(__name__)

KOMBU_UNACKED = "unacked"
"""kombu's hash of messages delivered and not yet acknowledged (its default name)."""
KOMBU_UNACKED_INDEX = "unacked_index"
"""kombu's sorted set of the same messages' delivery tags, by when they were delivered."""
UNTRACKED_AFTER_S = 10.0
"""A worker lists a chunk in flight within milliseconds of taking it: one unacknowledged
this long and listed nowhere was taken by a worker that is gone."""
MAX_QUEUED_TO_READ = 5_000
AFTER_LOSS_HOLD_S = 10.0
"""Workers reconnecting (or starting) within this of the first one leave the sweep to it:
what one failover lost, one sweep finds."""


def _chunk_names(messages: list[str]) -> set[str]:
    # Each message carries its chunk's task name (yoloq.queue.ChunkQueue sets it).
    return {match.group(1) for raw in messages for match in keys.CHUNK_TASK_NAME.finditer(raw)}


def queued_chunks(client: redis.Redis[str], lists: list[str]) -> set[str] | None:
    """``job_id:chunk`` of every chunk waiting in ``lists``; None if there are too many."""
    if sum(client.llen(name) for name in lists) > MAX_QUEUED_TO_READ:
        return None
    return _chunk_names([raw for name in lists for raw in client.lrange(name, 0, -1)])


def chunks_somewhere(jobs: JobStore, models: set[str]) -> set[str] | None:
    """``job_id:chunk`` of every chunk of ``models`` queued, held in flight or
    unacknowledged; None with too long a backlog to read."""
    lists = sorted({name for model in models for name in keys.priority_queues(model)})
    queued = queued_chunks(jobs.redis, lists)
    if queued is None:
        return None
    return queued | jobs.all_inflight() | _chunk_names(jobs.redis.hvals(KOMBU_UNACKED))


def send_missing(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    record: JobRecord,
    chunks: range,
    somewhere: set[str],
) -> list[int]:
    """Send again each chunk of ``chunks`` not counted and not ``somewhere``, rebuilt from
    the job's inputs; returns them."""
    counted = jobs.counted_chunks(record.public.id)
    missing = [
        chunk
        for chunk in chunks
        if chunk not in counted and keys.chunk_id(record.public.id, chunk) not in somewhere
    ]
    pages: dict[int, tuple[list[ImageRef], dict[int, str]]] = {}
    for chunk in missing:
        send(_rebuilt(inputs, record, chunk, pages))
    return missing


def _rebuilt(
    inputs: JobInputs,
    record: JobRecord,
    chunk: int,
    pages: dict[int, tuple[list[ImageRef], dict[int, str]]],
) -> ChunkTask:
    """Chunk ``chunk`` as it was sent, from the job's inputs; ``pages`` caches what was read."""
    if record.only_task is not None:
        return record.only_task
    number = inputs.page_of(record, chunk)
    if number not in pages:
        pages[number] = inputs.read_page(record.public.id, number)
    return inputs.chunk_task(record, chunk, pages[number])


def restore_untracked(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    older_than_s: float = UNTRACKED_AFTER_S,
) -> int:
    """Send again each chunk kombu lists as unacknowledged, delivered over
    ``older_than_s`` ago, that no worker lists in flight and that is not counted: a
    worker died between taking it and listing it (it lists a chunk as it receives it),
    so no requeue knows it, and kombu would redeliver it only after the visibility
    timeout. Called at start and when a dead worker's chunks are requeued. Each message is taken out
    of kombu's list first (exactly one caller succeeds), so kombu does not redeliver it
    later; returns the chunks sent."""
    tags = jobs.redis.zrangebyscore(KOMBU_UNACKED_INDEX, "-inf", time.time() - older_than_s)
    if not tags:
        return 0
    held = jobs.all_inflight()
    pages: dict[int, tuple[list[ImageRef], dict[int, str]]] = {}
    sent = 0
    for tag in tags:
        raw = jobs.redis.hget(KOMBU_UNACKED, tag)
        names = _chunk_names([raw]) if raw else set()
        if len(names) != 1 or names & held:
            continue
        job_id, _, number = next(iter(names)).partition(":")
        record = jobs.get(job_id)  # None for another deployment's job (another prefix)
        if record is None or record.public.status.is_final:
            continue
        chunk = int(number)
        if jobs.counted_parts(job_id, [chunk]) or not jobs.redis.hdel(KOMBU_UNACKED, tag):
            continue
        jobs.redis.zrem(KOMBU_UNACKED_INDEX, tag)
        send(_rebuilt(inputs, record, chunk, pages))
        sent += 1
        log.warning(
            "job %s chunk %d was taken by a worker that died before listing it; sent again",
            job_id,
            chunk,
        )
    metrics.LOST_CHUNKS.inc(sent)
    return sent


def sweep_lost_chunks(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    lost_after_s: float,
    send_plan: Callable[[str, str, str, float], None] = lambda *_: None,
) -> int:
    """Send again every chunk lost by the broker, and a planning step for a job whose
    planner has made no progress for ``lost_after_s``; returns the chunks sent."""
    if not jobs.take_sweep_lock(max(1.0, lost_after_s / 4)):
        return 0
    return _sweep(jobs, inputs, send, time.time() - lost_after_s, (send_plan, lost_after_s))


def sweep_after_connection_loss(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    lost_at: float,
    after: Literal["reconnect", "start"],
    held_here: Callable[[], set[str]] = set,
) -> int | None:
    """Send again the chunks lost at ``lost_at``, when a broker connection went: jobs
    submitted before then, whatever their age. A message taken as a master dies is
    lost then, so this need not wait ``YOLOQ_LOST_CHUNK_AFTER_S``; stopped planners are
    left to the periodic sweep. Every worker that reconnects or
    starts calls it (``workers.reconnect``); the first of each kind in
    ``AFTER_LOSS_HOLD_S`` sweeps, and the others get None. ``held_here``: the chunks
    this worker is running, whose in-flight listing may have died with the master."""
    if not jobs.take_sweep_lock(AFTER_LOSS_HOLD_S, after=after):
        return None
    return _sweep(jobs, inputs, send, lost_at, held_here=held_here)


def _sweep(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    created_before: float,
    restart_planners: tuple[Callable[[str, str, str, float], None], float] | None = None,
    held_here: Callable[[], set[str]] = set,
) -> int:
    """The sweep of the jobs created before ``created_before``; with ``restart_planners``
    (send_plan, silent_s), a step for each planning job whose planner is silent that long."""
    records = {}
    for job_id in jobs.active_jobs(created_before=created_before):
        record = jobs.get(job_id)
        if record is None or record.public.status.is_final:
            jobs.forget_active(job_id)
        else:
            records[job_id] = record
    if not records:
        return 0
    somewhere = chunks_somewhere(jobs, {record.model for record in records.values()})
    if somewhere is None:
        log.info("more than %d chunks queued; not looking for lost ones now", MAX_QUEUED_TO_READ)
        return 0
    somewhere |= held_here()
    resent = 0
    for job_id, record in records.items():
        sent_up_to = record.chunks
        if record.public.status == JobStatus.PLANNING:
            state = jobs.plan_state(job_id)
            if state is None:
                continue
            # Chunks of a page the planner counted but has not sent are the planner's.
            sent_up_to = state.chunks_sent
            if restart_planners is not None:
                send_plan, silent_s = restart_planners
                if state.planner_beat < time.time() - silent_s:
                    log.warning("job %s: its planner stopped; planning goes on", job_id)
                    send_plan(job_id, record.model, record.priority, 0)
        lost = send_missing(jobs, inputs, send, record, range(sent_up_to), somewhere)
        if lost:
            resent += len(lost)
            log.warning("job %s: chunks %s were lost by the broker; sent again", job_id, lost)
    metrics.LOST_CHUNKS.inc(resent)
    return resent
