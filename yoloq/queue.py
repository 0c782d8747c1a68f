"""The Celery queue: one app configuration shared by the API (sender) and workers.

The API sends tasks by name (``keys.INFER_TASK``) so it never imports the worker code,
torch or Ultralytics.
"""

from __future__ import annotations

from celery import Celery

from yoloq import keys
from yoloq.redis_connection import celery_broker
from yoloq.schemas import ChunkTask
from yoloq.settings import Settings


def make_celery(settings: Settings) -> Celery:
    broker, sentinel_options = celery_broker(settings.redis_url)
    app = Celery("yoloq", broker=broker, set_as_current=False)
    app.conf.update(
        # JSON only: a pickle from the broker would be remote code execution.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Acknowledge after the chunk is recorded, and hand a chunk back if its worker
        # dies, so a killed worker's chunks are redelivered instead of lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=queue_for(settings),
        # Flower and `celery events` see tasks only with events on.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Look for chunks past the visibility timeout every 10 s (kombu's default
            # looks every 100 s), so the backstop acts soon after the timeout.
            "unacked_restore_throttle": 1,
            **sentinel_options,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def queue_for(settings: Settings) -> str:
    return keys.queue_name(settings.queue_model_name)


class ChunkQueue:
    """Sends chunks to the lists of their model and priority."""

    def __init__(self, app: Celery, model: str) -> None:
        self.app = app
        self.model = model
        self.queues = keys.priority_queues(model)
        """The lists of ``model``, highest priority first."""

    def send(self, chunk: ChunkTask) -> None:
        # By the chunk's own model: a worker requeuing a dead worker's chunks may serve
        # another model.
        self.app.send_task(
            keys.INFER_TASK,
            args=[chunk.model_dump(mode="json")],
            queue=keys.queue_for_chunk(chunk.model, chunk.priority, chunk.chunk),
            # Names the task in Flower without putting image data in its arguments, and
            # spares Celery a saferepr of them (a fifth of its cost of sending).
            shadow=keys.chunk_task_name(chunk.job_id, chunk.chunk),
            argsrepr=f"{len(chunk.images)} image(s) from {chunk.start}",
            kwargsrepr="{}",
        )

    def send_plan(self, job_id: str, model: str, priority: str, countdown: float = 0) -> None:
        """A step of planning a prefix or manifest job, for any worker of its model: the
        planner lists a few pages, sends their chunks, and sends the next step."""
        self.app.send_task(
            keys.PLAN_TASK,
            args=[job_id],
            queue=keys.priority_queue(model, priority, 0),
            countdown=countdown or None,
        )
