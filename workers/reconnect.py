"""After the broker connection comes back, and when a worker starts: look for the chunks
lost as the connection went.

A message taken from a Redis master in its last moment (a failover, a crash) can be lost
on the way: removed from the queue, never recorded as unacknowledged, and never listed
in flight (``workers.sweeper``). The periodic sweep finds it only once its job is
``YOLOQ_LOST_CHUNK_AFTER_S`` old. A worker that reconnects knows the moment something
may have been lost, so it sweeps the jobs submitted before then at once. So does a
worker starting: kombu can stop a worker as the connection breaks (an ``AttributeError``
in its Redis transport, handing back messages on a connection that is gone), and its
supervisor starts it again. Without this a worker holding many chunks
(``YOLOQ_WORKER_CONCURRENCY``), and so taking messages most of the time, would leave a
job waiting minutes after each failover.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Literal

from celery import bootsteps
from celery.worker import state

from workers import runtime
from workers.sweeper import sweep_after_connection_loss
from yoloq import keys

log = logging.getLogger(__name__)

ATTEMPTS = 10
RETRY_S = 2.0


def chunks_running() -> set[str]:
    """``job_id:chunk`` of every chunk this worker's threads are running."""
    held = set()
    for request in tuple(state.active_requests):
        if request.name == keys.INFER_TASK and request.args:
            message = request.args[0]
            held.add(keys.chunk_id(message["job_id"], int(message["chunk"])))
    return held


def sweep_soon(lost_at: float, after: Literal["reconnect", "start"]) -> None:
    """Sweep the jobs submitted before ``lost_at``, on a thread of its own so that
    consuming goes on; retried while Redis settles after a failover."""
    worker = runtime.current()

    def sweep() -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                sent = sweep_after_connection_loss(
                    worker.jobs,
                    worker.inputs,
                    worker.requeue,
                    lost_at,
                    after,
                    held_here=chunks_running,
                )
            except Exception as error:
                log.warning("sweep after reconnecting failed (try %d): %s", attempt, error)
                time.sleep(RETRY_S)
                continue
            if sent is None:
                log.info("another worker looks for chunks lost before this %s", after)
            elif sent:
                log.warning("sent again %d chunk(s) lost before this %s", sent, after)
            else:
                log.info("no chunk was lost before this %s", after)
            return

    threading.Thread(target=sweep, name="reconnect-sweep", daemon=True).start()


class SweepAfterReconnect(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step: Celery stops and starts these each time it reconnects."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.lost_at: float | None = None

    def start(self, parent: Any) -> None:
        # restart_count is 0 at the first start, and counts reconnections after it.
        if parent.restart_count > 0:
            sweep_soon(self.lost_at or time.time(), "reconnect")
        self.lost_at = None

    def stop(self, parent: Any) -> None:
        self.lost_at = time.time()
