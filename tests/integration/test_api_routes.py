"""API routes in-process against the real Redis and S3 servers, with no worker running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests import image_factory as make
from tests.conftest import INPUT_BUCKET, RESULTS_BUCKET, UPLOADS_BUCKET
from yoloq.local_services import free_port
from yoloq.object_store import ObjectStore
from yoloq.settings import Settings


def _settings(redis_url: str, s3_endpoint: str, **overrides: Any) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=f"api-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3_endpoint,
        input_buckets=[INPUT_BUCKET],
        results_bucket=RESULTS_BUCKET,
        uploads_bucket=UPLOADS_BUCKET,
        max_images_per_job=3,
        max_upload_bytes=100_000,
        **overrides,
    )


@pytest.fixture
def client(redis_url: str, s3_endpoint: str) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(redis_url, s3_endpoint))) as test_client:
        yield test_client


def _job(n: int = 1, bucket: str = INPUT_BUCKET, **params: Any) -> dict[str, Any]:
    return {"images": [{"bucket": bucket, "key": f"{i}.jpg"} for i in range(n)], "params": params}


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_says_why_without_a_worker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "no worker" in response.json()["reason"]


def test_unknown_and_malformed_job_ids_are_404(client: TestClient) -> None:
    for job_id in (uuid.uuid4().hex, "not-an-id", "..%2F..%2Fetc"):
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert client.get(f"/v1/jobs/{job_id}/results").status_code == 404


def test_bucket_outside_the_allow_list_is_403(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=_job(bucket="secret-bucket"))
    assert response.status_code == 403
    assert "secret-bucket" in response.json()["detail"]


def test_too_many_images_is_422_with_the_limit(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=_job(4))
    assert response.status_code == 422
    assert "at most 3 images" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_job(conf=3), "conf"),
        (_job(imgsz=100), "imgsz"),
        ({"images": []}, "images"),
        ({"images": [{"bucket": INPUT_BUCKET, "key": ""}]}, "key"),
    ],
)
def test_invalid_bodies_name_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


def test_submitted_job_is_queued_with_its_chunks(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=_job(3))
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["total"] == 3
    job = client.get(f"/v1/jobs/{accepted['id']}").json()
    assert (job["status"], job["total"], job["done"], job["failed"]) == ("queued", 3, 0, 0)
    assert job["results"] == {
        "bucket": RESULTS_BUCKET,
        "key": f"jobs/{accepted['id']}/results.jsonl",
    }
    page = client.get(f"/v1/jobs/{accepted['id']}/results").json()
    assert page == {"items": [], "next_offset": 0}


def test_upload_stores_into_the_uploads_bucket(
    client: TestClient, object_store: ObjectStore
) -> None:
    data = make.jpeg()
    response = client.post("/v1/images", files={"file": ("cam 1.JPG", data, "image/jpeg")})
    assert response.status_code == 201
    ref = response.json()
    assert ref["bucket"] == UPLOADS_BUCKET and ref["key"].endswith(".jpg")
    assert object_store.get(ref["bucket"], ref["key"]) == data


def test_upload_refuses_empty_and_oversized_files(client: TestClient) -> None:
    assert client.post("/v1/images", files={"file": ("a.jpg", b"")}).status_code == 422
    big = client.post("/v1/images", files={"file": ("a.jpg", b"x" * 100_001)})
    assert big.status_code == 413


def test_redis_down_is_503_with_a_clear_body(s3_endpoint: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(_settings(dead_redis, s3_endpoint))) as dead:
        response = dead.get(f"/v1/jobs/{uuid.uuid4().hex}")
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert dead.get("/healthz").status_code == 200
        assert "redis unreachable" in dead.get("/readyz").json()["reason"]
