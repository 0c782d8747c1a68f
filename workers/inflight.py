"""Requeuing the chunks of a worker that died.

Each worker lists the chunks it is running in Redis (``JobStore.track_inflight``). When a
worker is killed, its chunks are still unacknowledged in the broker, which redelivers
them only after the visibility timeout (20 minutes by default). Instead, the worker itself
requeues them when it restarts, and any other worker does once the dead one's heartbeat
expires. Requeuing is safe because a chunk delivered twice is recorded once; the broker's
own redelivery later is skipped the same way. A chunk its worker died holding before it
listed it is found in the broker's unacknowledged messages at the same moments
(``workers.sweeper.restore_untracked``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workers import metrics
from workers.sweeper import restore_untracked
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)


def _requeue(
    jobs: JobStore, send: Callable[[ChunkTask], None], worker: str, even_if_alive: bool
) -> int:
    tasks = jobs.claim_inflight(worker, even_if_alive=even_if_alive)
    for task in tasks:
        send(task)
    metrics.REQUEUED_CHUNKS.inc(len(tasks))
    return len(tasks)


def requeue_own_leftovers(
    jobs: JobStore, inputs: JobInputs, send: Callable[[ChunkTask], None], me: str
) -> int:
    """At start: the chunks this worker's previous run left unfinished, listed or not."""
    requeued = _requeue(jobs, send, me, even_if_alive=True)
    if requeued:
        log.warning("requeued %d chunk(s) left unfinished by this worker's last run", requeued)
    return requeued + restore_untracked(jobs, inputs, send)


def requeue_orphans(
    jobs: JobStore,
    inputs: JobInputs,
    send: Callable[[ChunkTask], None],
    me: str,
    silent_for_s: float,
) -> int:
    """The chunks of every other worker silent for ``silent_for_s`` whose heartbeat has
    expired, listed or not."""
    requeued = 0
    silent = [worker for worker in jobs.silent_workers(silent_for_s) if worker != me]
    for worker in silent:
        count = _requeue(jobs, send, worker, even_if_alive=False)
        if count:
            log.warning(
                "worker %s stopped sending heartbeats; requeued the %d chunk(s) it was running",
                worker,
                count,
            )
        requeued += count
    if silent:
        requeued += restore_untracked(jobs, inputs, send)
    return requeued
