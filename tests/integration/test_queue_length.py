"""KEDA scales workers on ``LLEN yoloq.infer.<model>``: check that this Redis list really is
where the broker keeps a model's waiting chunks (deploy/k8s/worker-scaledobject.yaml)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from yoloq.queue import ChunkQueue, make_celery, queue_for
from yoloq.schemas import ChunkTask, ImageRef, InferenceParams
from yoloq.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    # A model of its own, so no worker of the session consumes these chunks.
    return Settings(redis_url=redis_url, model_name=f"keda-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    app = make_celery(settings)
    yield app
    app.close()


def test_waiting_chunks_are_the_length_of_the_model_queue_list(
    settings: Settings, app: Celery
) -> None:
    queue = queue_for(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.llen(queue) == 0
        sender = ChunkQueue(app, queue)
        for chunk in range(3):
            sender.send(
                ChunkTask(
                    job_id=uuid.uuid4().hex,
                    model=settings.queue_model_name,
                    chunk=chunk,
                    start=chunk,
                    images=[ImageRef(bucket="images", key=f"{chunk}.jpg")],
                    params=InferenceParams(),
                    queued_at=time.time(),
                )
            )
        assert client.llen(queue) == 3
    finally:
        client.delete(queue)
        client.close()
