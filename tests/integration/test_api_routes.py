"""API routes in-process against the real Redis and S3 servers, with no worker running."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests import image_factory as make
from tests.conftest import (
    ADMIN_API_KEY,
    API_KEY,
    API_KEYS,
    INPUT_BUCKET,
    OTHER_API_KEY,
    OTHER_BUCKET,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
)
from yoloq import keys
from yoloq.job_store import JobStore, PlanState
from yoloq.local_services import free_port
from yoloq.object_store import ObjectStore
from yoloq.schemas import PrefixSource
from yoloq.settings import Settings, TenantConfig


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
        api_keys={digest: TenantConfig.model_validate(t) for digest, t in API_KEYS.items()},
        **overrides,
    )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(redis_url: str, s3_endpoint: str) -> Iterator[TestClient]:
    app = create_app(_settings(redis_url, s3_endpoint))
    with TestClient(app, headers=_auth(API_KEY)) as test_client:
        yield test_client


@pytest.fixture
def anonymous(client: TestClient) -> Iterator[TestClient]:
    with TestClient(client.app) as test_client:
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
    for unfinished in ("/results?format=coco", "/results.jsonl"):
        response = client.get(f"/v1/jobs/{accepted['id']}{unfinished}")
        assert response.status_code == 409 and "queued (0/3 images)" in response.json()["detail"]


def test_upload_stores_into_the_uploads_bucket(
    client: TestClient, object_store: ObjectStore
) -> None:
    data = make.jpeg()
    response = client.post("/v1/images", files={"file": ("cam 1.JPG", data, "image/jpeg")})
    assert response.status_code == 201
    ref = response.json()
    assert ref["bucket"] == UPLOADS_BUCKET and ref["key"].endswith(".jpg")
    assert ref["key"].startswith("uploads/tenant-a/")
    assert object_store.get(ref["bucket"], ref["key"]) == data


def test_upload_refuses_empty_and_oversized_files(client: TestClient) -> None:
    assert client.post("/v1/images", files={"file": ("a.jpg", b"")}).status_code == 422
    big = client.post("/v1/images", files={"file": ("a.jpg", b"x" * 100_001)})
    assert big.status_code == 413


def test_redis_down_is_503_with_a_clear_body(s3_endpoint: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(_settings(dead_redis, s3_endpoint))
    with TestClient(app, headers=_auth(API_KEY)) as dead:
        response = dead.get(f"/v1/jobs/{uuid.uuid4().hex}")
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert dead.get("/healthz").status_code == 200
        assert "redis unreachable" in dead.get("/readyz").json()["reason"]


def test_a_job_no_replica_confirms_is_503_and_never_runs(redis_url: str, s3_endpoint: str) -> None:
    # The test Redis has no replica: WAIT 1 finds none, so the job is not durable.
    settings = _settings(
        redis_url, s3_endpoint, redis_replicas_to_ack=1, redis_replica_ack_timeout_ms=50
    )
    app = create_app(settings)
    with TestClient(app, headers=_auth(API_KEY)) as replicated:
        response = replicated.post("/v1/jobs", json=_job(2), headers={"Idempotency-Key": "k1"})
        assert response.status_code == 503, response.text
        assert "0 of the 1 replica(s)" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
    store = JobStore.from_url(redis_url, settings.key_prefix)
    assert not any(store.queued_images().values())
    assert not store.redis.keys(f"{settings.key_prefix}:job:*")


# Auth and tenants


def test_no_key_or_a_wrong_key_is_401(anonymous: TestClient) -> None:
    for headers in ({}, _auth("not-a-key"), {"Authorization": "Basic abc"}):
        response = anonymous.post("/v1/jobs", json=_job(), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in anonymous.get(f"/v1/jobs/{uuid.uuid4().hex}").json()["detail"]
    assert anonymous.post("/v1/images", files={"file": ("a.jpg", b"x")}).status_code == 401


def test_a_tenant_never_sees_another_tenants_job(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=_job()).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    other = _auth(OTHER_API_KEY)
    assert client.get(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/results", headers=other).status_code == 404


def test_buckets_are_per_tenant(client: TestClient) -> None:
    assert client.post("/v1/jobs", json=_job(bucket=OTHER_BUCKET)).status_code == 403
    other = _auth(OTHER_API_KEY)
    assert client.post("/v1/jobs", json=_job(bucket=OTHER_BUCKET), headers=other).status_code == 202
    refused = client.post("/v1/jobs", json=_job(bucket=INPUT_BUCKET), headers=other)
    assert refused.status_code == 403
    assert "s3://images/0.jpg" in refused.json()["detail"]


def test_a_tenant_may_read_its_own_uploads_only(client: TestClient) -> None:
    ref = client.post("/v1/images", files={"file": ("a.jpg", make.jpeg())}).json()
    assert client.post("/v1/jobs", json={"images": [ref]}).status_code == 202
    other = _auth(OTHER_API_KEY)
    assert client.post("/v1/jobs", json={"images": [ref]}, headers=other).status_code == 403


def test_workers_need_an_admin_key(client: TestClient) -> None:
    assert client.get("/v1/workers").status_code == 403
    assert client.get("/v1/workers", headers=_auth(ADMIN_API_KEY)).status_code == 200


def test_keys_from_a_file(redis_url: str, s3_endpoint: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(API_KEYS))
    settings = _settings(redis_url, s3_endpoint).model_copy(
        update={"api_keys": {}, "api_keys_file": keys_file}
    )
    with TestClient(create_app(settings), headers=_auth(API_KEY)) as from_file:
        assert from_file.post("/v1/jobs", json=_job()).status_code == 202


def test_auth_disabled_serves_everyone_and_warns(
    redis_url: str, s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(redis_url, s3_endpoint).model_copy(
        update={"api_keys": {}, "auth_disabled": True}
    )
    with TestClient(create_app(settings)) as open_api:
        assert open_api.post("/v1/jobs", json=_job()).status_code == 202
        assert open_api.get("/v1/workers").status_code == 200
    assert "AUTHENTICATION IS DISABLED" in caplog.text


# Idempotency and backpressure


def test_idempotency_key_returns_the_first_job(client: TestClient) -> None:
    key = {"Idempotency-Key": f"batch-{uuid.uuid4().hex}"}
    first = client.post("/v1/jobs", json=_job(2), headers=key)
    again = client.post("/v1/jobs", json=_job(2), headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    conflict = client.post("/v1/jobs", json=_job(3), headers=key)
    assert conflict.status_code == 409
    assert first.json()["id"] in conflict.json()["detail"]
    # Keys are per tenant: another tenant's identical key is a different request.
    other = client.post(
        "/v1/jobs", json=_job(1, bucket=OTHER_BUCKET), headers={**key, **_auth(OTHER_API_KEY)}
    )
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_full_queue_is_429_with_retry_after(redis_url: str, s3_endpoint: str) -> None:
    settings = _settings(redis_url, s3_endpoint).model_copy(
        update={"queue_limit": 4, "max_images_per_job": 10}
    )
    with TestClient(create_app(settings), headers=_auth(API_KEY)) as limited:
        # An empty queue takes any job, even one larger than the limit.
        assert limited.post("/v1/jobs", json=_job(6)).status_code == 202
        key = {"Idempotency-Key": "after-429"}
        refused = limited.post("/v1/jobs", json=_job(1), headers=key)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
        assert "limit 4" in refused.json()["detail"]
        # A refused request does not use up its Idempotency-Key.
        assert limited.post("/v1/jobs", json=_job(2), headers=key).status_code == 429
        metrics = limited.get("/metrics").text
        assert 'route="/v1/jobs",status="429"' in metrics


# Jobs from a prefix


def _planned(client: TestClient, job_id: str) -> PlanState:
    jobs: JobStore = client.app.state.services.jobs  # type: ignore[attr-defined]
    state = jobs.plan_state(job_id)
    assert state is not None
    return state


def test_a_prefix_job_is_planned_by_the_workers(
    client: TestClient, object_store: ObjectStore
) -> None:
    """Taken at once as `planning`, with a planning step sent to its model's queue; what
    can be checked now (access, the bucket, images under the prefix) is."""
    prefix = f"prefix-jobs/{uuid.uuid4().hex}/"
    for name in ("b.jpg", "a.PNG", "c.jpeg", "notes.txt"):
        object_store.put(INPUT_BUCKET, prefix + name, make.jpeg())
    source = {"bucket": INPUT_BUCKET, "prefix": prefix}
    accepted = client.post("/v1/jobs", json={"source": source})
    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["status"], accepted.json()["total"]) == ("planning", 0)
    job_id = accepted.json()["id"]
    state = _planned(client, job_id)
    assert state.spec.source == PrefixSource(bucket=INPUT_BUCKET, prefix=prefix)
    assert state.spec.most == 3  # the deployment's max_images_per_job here
    jobs: JobStore = client.app.state.services.jobs  # type: ignore[attr-defined]
    queued = jobs.redis.lrange(keys.queue_name(state.record.model), 0, -1)
    steps = [json.loads(m)["headers"] for m in queued if keys.PLAN_TASK in m]
    assert any(job_id in step["argsrepr"] for step in steps), steps
    limited = client.post("/v1/jobs", json={"source": {**source, "limit": 2}})
    assert _planned(client, limited.json()["id"]).spec.most == 2
    shown = client.get(f"/v1/jobs/{job_id}").json()
    assert shown["status"] == "planning" and shown["planned_at"] is None

    empty = client.post("/v1/jobs", json={"source": {"bucket": INPUT_BUCKET, "prefix": "none/"}})
    assert empty.status_code == 422 and "no images under" in empty.json()["detail"]
    forbidden = client.post("/v1/jobs", json={"source": {"bucket": OTHER_BUCKET, "prefix": ""}})
    assert forbidden.status_code == 403


def test_a_manifest_job_must_name_an_object_it_may_read(client: TestClient) -> None:
    missing = client.post(
        "/v1/jobs", json={"manifest": {"bucket": INPUT_BUCKET, "key": "no.jsonl"}}
    )
    assert missing.status_code == 422 and "no manifest at" in missing.json()["detail"]
    other = client.post("/v1/jobs", json={"manifest": {"bucket": OTHER_BUCKET, "key": "m.jsonl"}})
    assert other.status_code == 403


def test_images_or_source_not_both(client: TestClient) -> None:
    both = {"images": _job()["images"], "source": {"bucket": INPUT_BUCKET}}
    neither: dict[str, Any] = {"params": {}}
    for body in (both, neither):
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422
        assert "give one of 'images'" in str(response.json()["detail"])


def test_oversized_bodies_are_413(redis_url: str, s3_endpoint: str) -> None:
    settings = _settings(redis_url, s3_endpoint).model_copy(update={"max_body_bytes": 2048})
    with TestClient(create_app(settings), headers=_auth(API_KEY)) as small:
        big = {"images": [{"bucket": INPUT_BUCKET, "key": "k" * 1000}] * 3}
        response = small.post("/v1/jobs", json=big)
        assert response.status_code == 413
        assert "2048 bytes" in response.json()["detail"]
        assert small.post("/v1/jobs", json=_job(1)).status_code == 202
        # Uploads have their own limit (max_upload_bytes), not the JSON one.
        upload = small.post("/v1/images", files={"file": ("a.jpg", b"x" * 50_000)})
        assert upload.status_code == 201
