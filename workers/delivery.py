"""One delivery of a chunk: decide what to do with it, do it within the time limits, and
carry it through Redis and S3 outages. Knows nothing of Celery.

The limits, all from the moment the delivery starts: images not done by the soft limit
become ``timeout`` errors and the rest is recorded; recording retries through outages
until shortly before the hard limit, then the chunk is handed back to the queue; a chunk
still running at the hard limit has a stuck thread, and the watchdog stops the worker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

import redis

from workers import metrics
from workers.pipeline import (
    ChunkOutcome,
    ModelNotServed,
    record_chunk,
    record_poison,
    rerecord_counted,
    run_chunk,
    served_model,
    skipped,
)
from workers.runtime import WorkerRuntime
from yoloq.object_store import StorageUnavailable
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTAGES = (redis.ConnectionError, redis.TimeoutError, StorageUnavailable)
"""Failures of a store that come back by themselves: worth waiting out."""


class HandBack(Exception):
    """The chunk could not be finished in its time: give it back to the queue."""


def retry_through_outages(step: Callable[[], T], deadline: float, what: str) -> T:
    """``step()``, retried with exponential backoff and jitter while Redis or S3 is
    unreachable, until ``deadline`` (``time.monotonic()``); then HandBack. Every step
    given here is safe to repeat."""
    retry = 0
    while True:
        try:
            return step()
        except OUTAGES as error:
            delay = random.uniform(0.5, 1.0) * min(5.0, 0.25 * 2**retry)
            if time.monotonic() + delay > deadline:
                raise HandBack(f"{what} kept failing until its time ran out: {error}") from error
            store = "s3" if isinstance(error, StorageUnavailable) else "redis"
            metrics.OUTAGE_RETRIES.labels(store).inc()
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, store, error, delay)
            time.sleep(delay)
            retry += 1


def deliver_chunk(runtime: WorkerRuntime, task: ChunkTask) -> ChunkOutcome:
    settings = runtime.settings
    started = time.monotonic()
    soft_deadline = started + settings.chunk_soft_limit_s
    # Stop retrying a little before the watchdog would stop the whole worker.
    give_up = started + settings.chunk_hard_limit_s - min(5.0, 0.1 * settings.chunk_hard_limit_s)
    name = f"job {task.job_id} chunk {task.chunk}"
    try:
        served_model(runtime, task)
    except ModelNotServed as error:
        # Before its delivery is counted: a chunk that reached a worker as it stopped
        # serving its version goes back to the queue, where another worker takes it.
        raise HandBack(str(error)) from error
    with runtime.watchdog.running(name):
        try:
            start = retry_through_outages(
                lambda: runtime.jobs.start_chunk(task, runtime.name), give_up, f"starting {name}"
            )
            if start.verdict in ("gone", "cancelled", "ended"):
                log.info("%s skipped: the job is %s", name, start.verdict)
                return skipped(task)
            if start.verdict == "counted":
                return retry_through_outages(
                    lambda: rerecord_counted(runtime, task), give_up, f"recording {name}"
                )
            if start.deliveries > settings.max_deliveries:
                return retry_through_outages(
                    lambda: record_poison(runtime, task, start.deliveries, runtime.name),
                    give_up,
                    f"setting aside {name}",
                )
            items = run_chunk(runtime, task, soft_deadline)
            return retry_through_outages(
                lambda: record_chunk(runtime, task, start.deliveries, items),
                give_up,
                f"recording {name}",
            )
        finally:
            # If Redis is down this entry stays; requeuing it later is harmless.
            with suppress(redis.RedisError):
                runtime.jobs.untrack_inflight(runtime.name, task)
