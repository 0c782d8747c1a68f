"""The Celery task: decode the message, hand it to plain code."""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers import runtime
from workers.pipeline import process_chunk
from yoloq import keys
from yoloq.schemas import ChunkTask


def register_tasks(app: Celery) -> None:
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
