"""KEDA scales workers on ``LLEN yoloq.infer.<model>``: check that this Redis list really is
where the broker keeps a model's waiting chunks (deploy/k8s/worker-scaledobject.yaml)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from yoloq.keys import priority_queues, queue_name
from yoloq.queue import ChunkQueue, make_celery
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


def test_waiting_chunks_are_the_lists_keda_watches(settings: Settings, app: Celery) -> None:
    model = settings.queue_model_name
    lists = priority_queues(model)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert all(client.llen(name) == 0 for name in lists)
        sender = ChunkQueue(app, model)
        for priority, chunks in (("high", 5), ("normal", 3), ("low", 2)):
            for chunk in range(chunks):
                sender.send(
                    ChunkTask(
                        job_id=uuid.uuid4().hex,
                        model=model,
                        chunk=chunk,
                        start=chunk,
                        images=[ImageRef(bucket="images", key=f"{chunk}.jpg")],
                        params=InferenceParams(),
                        priority=priority,  # type: ignore[arg-type]
                        queued_at=time.time(),
                    )
                )
        lengths = {name: client.llen(name) for name in lists}
        # A job's chunks spread over its priority's lists, and nowhere else.
        assert lengths == {
            f"{queue_name(model)}.high.0": 2,
            f"{queue_name(model)}.high.1": 1,
            f"{queue_name(model)}.high.2": 1,
            f"{queue_name(model)}.high.3": 1,
            queue_name(model): 2,
            f"{queue_name(model)}.normal.1": 1,
            f"{queue_name(model)}.low.0": 2,
        }
    finally:
        client.delete(*lists)
        client.close()


def test_a_chunk_goes_to_its_own_models_lists_whoever_sends_it(
    settings: Settings, app: Celery
) -> None:
    # A worker of one model requeues a dead worker's chunk of another.
    other = f"{settings.queue_model_name}-other"
    client = redis.Redis.from_url(settings.redis_url)
    try:
        ChunkQueue(app, settings.queue_model_name).send(
            ChunkTask(
                job_id=uuid.uuid4().hex,
                model=other,
                chunk=0,
                start=0,
                images=[ImageRef(bucket="images", key="0.jpg")],
                params=InferenceParams(),
                queued_at=time.time(),
            )
        )
        assert client.llen(queue_name(other)) == 1
        assert client.llen(queue_name(settings.queue_model_name)) == 0
    finally:
        client.delete(queue_name(other))
        client.close()
