"""The Celery task: decode the message, hand it to plain code."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import task_received
from celery.worker.request import Request

from workers import runtime
from workers.delivery import HandBack, deliver_chunk
from workers.planner import Planner, plan_step
from workers.webhook import WebhookFailed, backoff_s, deliver
from yoloq import keys
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)

PLAN_RETRY_S = 5.0


def register_tasks(app: Celery) -> None:
    @task_received.connect(weak=False, dispatch_uid="yoloq.track_received")  # type: ignore[untyped-decorator]
    def track_received(request: Request, **_: Any) -> None:
        # Listed in flight from the moment the worker holds the message, not only once a
        # thread starts it: a kill in between must not leave it to the visibility timeout.
        if request.name != keys.INFER_TASK:
            return
        worker = runtime.current()
        try:
            worker.jobs.track_inflight(worker.name, ChunkTask.model_validate(request.args[0]))
        except Exception:
            log.warning("could not list a received chunk in flight", exc_info=True)

    @app.task(name=keys.WEBHOOK_TASK, bind=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
    def deliver_webhook(self: Task, job_id: str) -> bool:
        worker = runtime.current()
        try:
            return deliver(worker.settings, worker.jobs, job_id)
        except WebhookFailed as error:
            attempt = self.request.retries + 1
            if attempt >= worker.settings.webhook_max_attempts:
                log.error("job %s: webhook given up after %d attempts: %s", job_id, attempt, error)
                return False
            log.warning("job %s: webhook attempt %d failed: %s", job_id, attempt, error)
            raise self.retry(countdown=backoff_s(attempt), exc=error) from error

    @app.task(name=keys.PLAN_TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def plan_job(job_id: str) -> None:
        worker = runtime.current()
        try:
            plan_step(Planner.of(worker), job_id)
        except Exception:
            # Redis or S3 away: try again shortly. The step is safe to repeat.
            log.exception("job %s: a planning step failed; trying again", job_id)
            record = worker.jobs.get(job_id)
            if record is not None:
                worker.send_plan(job_id, record.model, record.priority, PLAN_RETRY_S)

    @app.task(name=keys.INFER_TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def infer_chunk(message: dict[str, Any]) -> dict[str, Any]:
        task = ChunkTask.model_validate(message)
        try:
            outcome = deliver_chunk(runtime.current(), task)
        except HandBack as error:
            log.warning("job %s chunk %d handed back: %s", task.job_id, task.chunk, error)
            raise Reject(str(error), requeue=True) from error
        except Exception as error:
            # A failed task is acknowledged, and its images would be lost: hand the chunk
            # back instead. If it fails every time it ends in the dead-letter list.
            log.exception("job %s chunk %d failed; handed back", task.job_id, task.chunk)
            raise Reject(repr(error), requeue=True) from error
        return {
            "job_id": outcome.job_id,
            "chunk": outcome.chunk,
            "images": outcome.images,
            "errors": outcome.errors,
            "newly_counted": outcome.newly_counted,
            "job_complete": outcome.job_complete,
        }
