"""Finding chunks the broker lost, and sending them again.

kombu's Redis transport takes a message with BRPOP and only then records it as
unacknowledged. A worker killed in between, or Redis dying then, loses the message: it is
in no queue, not unacknowledged, and no worker listed it in flight, so neither requeuing
nor the visibility timeout brings it back. The soak found one in about 1,200 chunks
across 20 kills.

So one worker at a time (holding a lock) looks at the jobs submitted at least
``YOLOQ_LOST_CHUNK_AFTER_S`` ago that have not finished. A chunk that is not counted, not
held by a worker, not unacknowledged and not waiting in a queue is sent again from the
task the API stored with the job. Places are read in the order a chunk moves through them
(queue, then held, then counted), so a chunk moving on while it looks is still seen; one
moving back (redelivered) may be sent needlessly, which only makes a duplicate, and
duplicates are recorded once. With a long backlog the queues are not read (it would cost
too much) and the sweep waits for the backlog to shrink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from workers import metrics
from yoloq import keys
from yoloq.job_store import JobStore
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)

KOMBU_UNACKED = "unacked"
"""kombu's hash of messages delivered and not yet acknowledged (its default name)."""
MAX_QUEUED_TO_READ = 5_000


def _chunk_names(messages: list[str]) -> set[str]:
    # Each message carries its chunk's task name (yoloq.queue.ChunkQueue sets it).
    return {match.group(1) for raw in messages for match in keys.CHUNK_TASK_NAME.finditer(raw)}


def queued_chunks(client: redis.Redis[str], lists: list[str]) -> set[str] | None:
    """``job_id:chunk`` of every chunk waiting in ``lists``; None if there are too many."""
    if sum(client.llen(name) for name in lists) > MAX_QUEUED_TO_READ:
        return None
    return _chunk_names([raw for name in lists for raw in client.lrange(name, 0, -1)])


def sweep_lost_chunks(
    jobs: JobStore, send: Callable[[ChunkTask], None], lost_after_s: float
) -> int:
    """Send again every chunk lost by the broker; returns how many."""
    if not jobs.take_sweep_lock(max(1.0, lost_after_s / 4)):
        return 0
    records = {}
    for job_id in jobs.active_jobs(created_before=time.time() - lost_after_s):
        record = jobs.get(job_id)
        if record is None or record.public.status.is_final:
            jobs.forget_active(job_id)
        else:
            records[job_id] = record
    if not records:
        return 0
    lists = sorted({name for r in records.values() for name in keys.priority_queues(r.model)})
    queued = queued_chunks(jobs.redis, lists)
    if queued is None:
        log.info("more than %d chunks queued; not looking for lost ones now", MAX_QUEUED_TO_READ)
        return 0
    somewhere = queued | jobs.all_inflight() | _chunk_names(jobs.redis.hvals(KOMBU_UNACKED))
    resent = 0
    for job_id, record in records.items():
        counted = jobs.counted_chunks(job_id)
        lost = [
            chunk
            for chunk in range(record.chunks)
            if chunk not in counted and keys.chunk_id(job_id, chunk) not in somewhere
        ]
        if not lost:
            continue
        tasks = jobs.chunk_tasks(job_id)
        for chunk in lost:
            if chunk in tasks:
                send(tasks[chunk])
                resent += 1
        log.warning("job %s: chunks %s were lost by the broker; sent again", job_id, lost)
    metrics.LOST_CHUNKS.inc(resent)
    return resent
