"""Cancelling a job: queued chunks are skipped, no more results are written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET, OTHER_API_KEY, RESULTS_BUCKET
from yoloq import keys
from yoloq.job_store import JobStore
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore


@pytest.fixture(scope="module")
def http(api_url: str, worker: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        yield client


def _idle(job_store: JobStore, model: str) -> bool:
    lists = keys.priority_queues(model)
    pipe = job_store.redis.pipeline()
    for name in lists:
        pipe.llen(name)
    pipe.hlen("unacked")
    return not any(pipe.execute())


def test_cancel_skips_what_is_queued(
    http: httpx.Client, object_store: ObjectStore, job_store: JobStore, model_path: Path
) -> None:
    model = model_path.stem
    key = f"cancel/{uuid.uuid4().hex}.jpg"
    object_store.put(INPUT_BUCKET, key, make.jpeg())
    images = [{"bucket": INPUT_BUCKET, "key": key}] * 64  # 16 chunks
    submitted = http.post("/v1/jobs", json={"images": images, "priority": "low"})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    cancelled = http.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    wait_until(lambda: _idle(job_store, model), 120, "the worker to drain the queue")

    job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["done"] < 64  # the queued chunks were skipped
    parts = object_store.client.list_objects_v2(
        Bucket=RESULTS_BUCKET, Prefix=f"jobs/{job_id}/parts/"
    )
    # Parts only for chunks already recorded when the cancel came (none after).
    assert parts.get("KeyCount", 0) * 4 <= job["done"] + 4 * 4
    assert not object_store.get_if_exists(RESULTS_BUCKET, keys.results_key(job_id))
    assert http.get(f"/v1/jobs/{job_id}/results.jsonl").status_code == 409
    # Its results: what was done, and a last page.
    page = http.get(f"/v1/jobs/{job_id}/results", params={"limit": 1000}).json()
    assert len(page["items"]) == job["done"] and page["next_offset"] is None
    assert job_store.queued_images_for(model) == 0

    assert http.delete(f"/v1/jobs/{job_id}").status_code == 409
    other = {"Authorization": f"Bearer {OTHER_API_KEY}"}
    assert http.delete(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    # After the Redis TTL, the cancelled job is still known, from S3.
    job_store.delete(job_id)
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
