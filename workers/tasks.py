"""The Celery task: decode the message, hand it to plain code."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from workers import runtime
from workers.pipeline import process_chunk
from workers.webhook import WebhookFailed, backoff_s, deliver
from yoloq import keys
from yoloq.schemas import ChunkTask

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
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

    @app.task(name=keys.INFER_TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def infer_chunk(message: dict[str, Any]) -> dict[str, Any]:
        outcome = process_chunk(runtime.current(), ChunkTask.model_validate(message))
        return {
            "job_id": outcome.job_id,
            "chunk": outcome.chunk,
            "images": outcome.images,
            "errors": outcome.errors,
            "newly_counted": outcome.newly_counted,
            "job_complete": outcome.job_complete,
        }
