"""Priorities under load: a later high job overtakes an earlier low one, and a low job
still finishes while high jobs keep coming."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, JobCreate


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


@pytest.fixture(scope="module")
def image(object_store: ObjectStore) -> ImageRef:
    key = f"priorities/{uuid.uuid4().hex}.jpg"
    object_store.put(INPUT_BUCKET, key, make.jpeg(320, 240))
    return ImageRef(bucket=INPUT_BUCKET, key=key)


def _submit(client: Client, image: ImageRef, images: int, priority: str) -> str:
    body = JobCreate(images=[image] * images, priority=priority)  # type: ignore[arg-type]
    response = client.http.post("/v1/jobs", json=body.model_dump(mode="json"))
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _final(job_store: JobStore, job_id: str) -> bool:
    record = job_store.get(job_id)
    return record is not None and record.public.status.is_final


def test_high_overtakes_an_earlier_low_job(
    client: Client, image: ImageRef, job_store: JobStore
) -> None:
    low = _submit(client, image, 48, "low")  # 12 chunks of 4
    high = _submit(client, image, 16, "high")  # 4 chunks, submitted after
    wait_until(lambda: _final(job_store, high), 120, "the high job", interval_s=0.01)
    record = job_store.get(low)
    assert record is not None and not record.public.status.is_final, "low finished first"
    assert record.public.done < record.public.total
    wait_until(lambda: _final(job_store, low), 120, "the low job")


def test_low_is_not_starved_by_a_stream_of_high_jobs(
    client: Client, image: ImageRef, job_store: JobStore
) -> None:
    low = _submit(client, image, 8, "low")  # 2 chunks
    highs = [_submit(client, image, 8, "high") for _ in range(12)]  # 24 chunks, after it
    wait_until(lambda: _final(job_store, low), 120, "the low job", interval_s=0.01)
    unfinished = [job for job in highs if not _final(job_store, job)]
    assert unfinished, "the low job waited for every high job: starved"
    wait_until(lambda: all(_final(job_store, job) for job in highs), 120, "the high jobs")
