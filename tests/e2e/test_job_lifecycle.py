"""The whole path through HTTP: upload, submit, poll, results from Redis and from S3."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET, RESULTS_BUCKET
from yoloq.client import ApiError, Client
from yoloq.coco import to_coco
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.results import detections_of
from yoloq.schemas import ImageRef, JobStatus

BAD: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "not_found"),
    "empty": (b"", "empty"),
    "html": (make.html(), "not_an_image"),
    "truncated": (make.truncated_jpeg(), "decode_failed"),
}


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


def _put(store: ObjectStore, name: str, data: bytes) -> ImageRef:
    key = f"e2e/{uuid.uuid4().hex}/{name}"
    store.put(INPUT_BUCKET, key, data)
    return ImageRef(bucket=INPUT_BUCKET, key=key)


def test_twenty_images_with_every_bad_kind(
    api_url: str, client: Client, object_store: ObjectStore, job_store: JobStore, tmp_path: Path
) -> None:
    good: list[ImageRef] = []
    for i in range(4):  # through the API's upload endpoint
        path = tmp_path / f"upload-{i}.jpg"
        path.write_bytes(make.jpeg(300 + 10 * i, 200, seed=i))
        good.append(client.upload(path))
    for i, encoded in enumerate([make.png(), make.gray_png(), make.rgba_png(), make.png16()]):
        good.append(_put(object_store, f"kind-{i}.png", encoded))
    for i in range(8):
        good.append(
            _put(object_store, f"plain-{i}.jpg", make.jpeg(256 + 32 * i, 480 - 16 * i, seed=10 + i))
        )

    images: list[ImageRef] = []
    expected_error: dict[int, str] = {}
    bad_iter = iter(BAD.items())
    for i, ref in enumerate(good):
        images.append(ref)
        if i % 4 == 1:  # spread the bad ones across chunks
            name, (data, code) = next(bad_iter)
            if data is None:
                bad = ImageRef(
                    bucket=INPUT_BUCKET, key=f"e2e/{uuid.uuid4().hex}/never-uploaded.jpg"
                )
            else:
                bad = _put(object_store, name, data)
            expected_error[len(images)] = code
            images.append(bad)
    assert len(images) == 20

    accepted = client.submit(images)
    assert (accepted.status, accepted.total) == (JobStatus.QUEUED, 20)
    progress: list[int] = []
    job = client.wait(accepted.id, timeout_s=180, on_progress=lambda j: progress.append(j.done))
    assert job.status == JobStatus.PARTIAL
    assert (job.total, job.done, job.failed) == (20, 20, 4)
    assert job.created_at <= job.started_at <= job.finished_at  # type: ignore[operator]
    assert progress == sorted(progress)

    items = list(client.results(accepted.id, page_size=7))  # several pages
    assert [item.index for item in items] == list(range(20))
    assert [(i.bucket, i.key) for i in items] == [(r.bucket, r.key) for r in images]
    for item in items:
        if item.index in expected_error:
            assert item.status == "error" and item.error is not None
            assert item.error.code == expected_error[item.index]
            assert item.error.message
            assert detections_of(item) == []
        else:
            assert item.status == "ok" and item.error is None
            assert item.width and item.height
    sizes = {(i.key.rsplit("/", 1)[-1], i.width, i.height) for i in items if i.status == "ok"}
    assert ("plain-0.jpg", 256, 480) in sizes and ("kind-1.png", 320, 240) in sizes

    # Redis and S3 agree, line for line.
    raw = object_store.get(job.results.bucket, job.results.key)
    from_s3 = [json.loads(line) for line in raw.splitlines()]
    assert from_s3 == [item.model_dump(mode="json") for item in items]
    manifest = json.loads(object_store.get(RESULTS_BUCKET, f"jobs/{accepted.id}/manifest.json"))
    assert manifest["job"]["status"] == "partial" and manifest["job"]["failed"] == 4

    # The other formats: COCO, and the results.jsonl download.
    auth = client.http.headers
    coco = httpx.get(f"{api_url}/v1/jobs/{accepted.id}/results?format=coco", headers=auth).json()
    assert coco == to_coco(items)
    download = httpx.get(f"{api_url}/v1/jobs/{accepted.id}/results.jsonl", headers=auth)
    assert download.content == raw
    assert download.headers["content-type"].startswith("application/jsonl")

    # Once Redis has forgotten the job (its TTL), the API answers from S3.
    job_store.delete(accepted.id)
    assert job_store.get(accepted.id) is None
    assert client.job(accepted.id) == job
    assert list(client.results(accepted.id, page_size=6)) == items


def test_health_and_readiness_over_http(api_url: str, worker: str) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1


def test_errors_over_http(client: Client) -> None:
    with pytest.raises(ApiError) as missing:
        client.job(uuid.uuid4().hex)
    assert missing.value.status_code == 404
    with pytest.raises(ApiError) as forbidden:
        client.submit([ImageRef(bucket="not-allowed", key="a.jpg")])
    assert forbidden.value.status_code == 403


def test_openapi_documents_the_job_endpoints(api_url: str) -> None:
    paths = httpx.get(f"{api_url}/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results", "/v1/images"} <= set(
        paths
    )


def test_api_metrics(api_url: str, client: Client, object_store: ObjectStore) -> None:
    ref = _put(object_store, "metrics.jpg", make.jpeg())
    client.wait(client.submit([ref, ref]).id, timeout_s=120)
    httpx.get(f"{api_url}/v1/jobs/{uuid.uuid4().hex}")  # a 404
    text = httpx.get(f"{api_url}/metrics").text
    assert 'yoloq_api_requests_total{method="POST",route="/v1/jobs",status="202"}' in text
    assert 'yoloq_api_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}' in text
    assert (
        'yoloq_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/jobs"}'
        in text
    )
    assert "yoloq_api_images_submitted_total{model=" in text
    # Every image submitted so far is done, so nothing is queued.
    assert any(
        line.startswith("yoloq_queue_images{") and line.endswith(" 0.0")
        for line in text.splitlines()
    ), text
