"""Requests that wait on a job (``POST /v1/detect``, event streams, long polls), in-process
against the real Redis and S3, with no worker: the test records chunks itself through
the job store's Lua scripts, which publish the events the API follows."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests import image_factory as make
from tests.conftest import (
    API_KEY,
    INPUT_BUCKET,
    LIMITED_API_KEY,
    OTHER_API_KEY,
    RESULTS_BUCKET,
    UPLOADS_BUCKET,
)
from tests.integration.test_api_routes import _auth, _settings
from yoloq import keys
from yoloq.archive import PartRef, ResultArchive
from yoloq.catalog import Task
from yoloq.inputs import JobInputs
from yoloq.job_store import JobStore
from yoloq.object_store import ObjectStore
from yoloq.results import new_item
from yoloq.schemas import ChunkTask, JobStatus


def _client(redis_url: str, s3_endpoint: str, **overrides: Any) -> TestClient:
    settings = _settings(redis_url, s3_endpoint, events_heartbeat_s=0.5, chunk_size=4)
    settings = settings.model_copy(update={"max_images_per_job": 8, **overrides})
    return TestClient(create_app(settings), headers=_auth(API_KEY))


@pytest.fixture
def app_client(redis_url: str, s3_endpoint: str) -> Iterator[TestClient]:
    with _client(redis_url, s3_endpoint) as client:
        yield client


def _jobs(client: TestClient) -> JobStore:
    jobs: JobStore = client.app.state.services.jobs  # type: ignore[attr-defined]
    return jobs


def _task(jobs: JobStore, object_store: ObjectStore, job_id: str, chunk: int) -> ChunkTask:
    """The chunk as a worker gets it, rebuilt as the sweeper would."""
    record = jobs.get(job_id)
    assert record is not None
    return JobInputs(object_store, RESULTS_BUCKET).chunk_task(record, chunk)


def _record(
    jobs: JobStore, object_store: ObjectStore, job_id: str, chunk: int, final: bool = False
) -> None:
    """What a worker does with one chunk: start it, write its part, count it, end the job."""
    task = _task(jobs, object_store, job_id, chunk)
    start = jobs.start_chunk(task, "test-worker")
    assert start.verdict == "run"
    items = [
        new_item(Task.DETECT, index=task.start + i, bucket=ref.bucket, key=ref.key, status="ok")
        for i, ref in enumerate(task.images)
    ]
    one_chunk = task.job_chunks == 1
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    size = 0 if one_chunk else archive.write_part(job_id, chunk, start.deliveries, items)
    jobs.complete_chunk(task, PartRef(start.deliveries, size), items, keep_items=one_chunk)
    if final:
        jobs.finish(job_id, JobStatus.SUCCEEDED)


def _submit(client: TestClient, n: int) -> str:
    images = [{"bucket": INPUT_BUCKET, "key": f"waiting/{i}.jpg"} for i in range(n)]
    response = client.post("/v1/jobs", json={"images": images})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _read_events(client: TestClient, job_id: str, out: list[tuple[str, Any]]) -> None:
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith(":"):
                out.append(("comment", line))
            elif line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                out.append((name or "", json.loads(line.removeprefix("data:"))))


def test_events_follow_a_job_to_its_end_and_a_late_client_gets_the_end_at_once(
    app_client: TestClient, object_store: ObjectStore
) -> None:
    job_id = _submit(app_client, 8)  # two chunks of 4 (the settings' chunk size)
    events: list[tuple[str, Any]] = []
    reader = threading.Thread(target=_read_events, args=(app_client, job_id, events))
    reader.start()
    time.sleep(1.2)  # more than one heartbeat with nothing happening
    jobs = _jobs(app_client)
    _record(jobs, object_store, job_id, 0)
    time.sleep(0.3)
    _record(jobs, object_store, job_id, 1, final=True)
    reader.join(10)
    assert not reader.is_alive(), "the stream did not close after the final event"

    assert ("comment", ": heartbeat") in events
    data = [(name, e) for name, e in events if name != "comment"]
    assert data[0] == ("progress", {**data[0][1], "status": "queued", "done": 0, "total": 8})
    progress = [e["done"] for name, e in data if name == "progress"]
    assert progress == sorted(progress) and 4 in progress
    assert data[-1] == (
        "end",
        {"job": job_id, "status": "succeeded", "done": 8, "failed": 0, "total": 8},
    )

    late: list[tuple[str, Any]] = []
    started = time.monotonic()
    _read_events(app_client, job_id, late)
    assert time.monotonic() - started < 2
    assert late == [data[-1]]


def test_events_of_another_tenants_job_are_404(app_client: TestClient) -> None:
    job_id = _submit(app_client, 1)
    other = app_client.get(f"/v1/jobs/{job_id}/events", headers=_auth(OTHER_API_KEY))
    assert other.status_code == 404
    assert app_client.get(f"/v1/jobs/{uuid.uuid4().hex}/events").status_code == 404


def test_a_long_poll_answers_when_the_status_changes_or_its_wait_is_over(
    app_client: TestClient, object_store: ObjectStore
) -> None:
    job_id = _submit(app_client, 4)
    started = time.monotonic()
    unchanged = app_client.get(f"/v1/jobs/{job_id}", params={"wait": 0.6})
    assert unchanged.json()["status"] == "queued"
    assert 0.5 <= time.monotonic() - started < 5

    threading.Timer(0.4, _record, args=(_jobs(app_client), object_store, job_id, 0, True)).start()
    started = time.monotonic()
    changed = app_client.get(f"/v1/jobs/{job_id}", params={"wait": 20})
    waited = time.monotonic() - started
    assert changed.json()["status"] in ("running", "succeeded") and waited < 5


@pytest.mark.parametrize("through", ["redis", "s3"])
def test_detect_waits_for_its_item_and_answers_with_it(
    redis_url: str, s3_endpoint: str, object_store: ObjectStore, through: str
) -> None:
    inline_max = 1024 * 1024 if through == "redis" else 0
    with _client(redis_url, s3_endpoint, detect_inline_max_bytes=inline_max) as app_client:
        _detect_and_answer(app_client, object_store, through)


def _detect_and_answer(app_client: TestClient, object_store: ObjectStore, through: str) -> None:
    answers: list[Any] = []

    def call() -> None:
        answers.append(
            app_client.post(
                "/v1/detect",
                params={"conf": 0.5, "timeout": 20},
                files={"file": ("frame.jpg", make.jpeg(), "image/jpeg")},
            )
        )

    caller = threading.Thread(target=call)
    caller.start()
    jobs = _jobs(app_client)
    job_id = None
    deadline = time.monotonic() + 10
    while job_id is None and time.monotonic() < deadline:
        # The one job of this test's own key prefix.
        found = [k for k in jobs.redis.scan_iter(f"{jobs.keys.job('')}*") if k.count(":") == 2]
        job_id = found[0].rsplit(":", 1)[1] if found else None
        time.sleep(0.05)
    assert job_id, "the detect request queued no job"
    record = jobs.get(job_id)
    assert record and record.params.conf == 0.5 and record.public.total == 1
    task = _task(jobs, object_store, job_id, 0)
    assert task.priority == "high"
    [ref] = task.images
    assert ref.bucket == UPLOADS_BUCKET and ref.key.startswith("uploads/tenant-a/")
    if through == "redis":
        assert task.inline_image and jobs.image(job_id) == make.jpeg()
        assert ref.key == f"uploads/tenant-a/inline/{job_id}.jpg"
    else:
        assert not task.inline_image and jobs.image(job_id) is None
        assert object_store.get(ref.bucket, ref.key) == make.jpeg()
    time.sleep(0.3)
    _record(jobs, object_store, job_id, 0)  # counted but not yet finalised: enough to answer
    caller.join(10)
    [response] = answers
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job_id"] == job_id and body["item"]["key"] == ref.key
    assert response.headers["location"] == f"/v1/jobs/{job_id}"


def test_detect_with_no_worker_answers_202_after_its_timeout(app_client: TestClient) -> None:
    started = time.monotonic()
    response = app_client.post(
        "/v1/detect",
        params={"timeout": 0.5},
        content=make.jpeg(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 202, response.text
    assert 0.4 <= time.monotonic() - started < 5
    job = response.json()
    assert job["status"] == "queued" and job["total"] == 1
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert app_client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_detect_refuses_what_it_cannot_take(
    app_client: TestClient, object_store: ObjectStore
) -> None:
    jpeg = {"file": ("frame.jpg", make.jpeg(), "image/jpeg")}
    anonymous = TestClient(app_client.app)
    assert anonymous.post("/v1/detect", files=jpeg).status_code == 401
    other_bucket = app_client.post(
        "/v1/detect", json={"image": {"bucket": "other-team", "key": "a.jpg"}}
    )
    assert other_bucket.status_code == 403 and "other-team" in other_bucket.json()["detail"]
    not_allowed = app_client.post(
        "/v1/detect", params={"model": "unknown-model"}, files=jpeg, headers=_auth(LIMITED_API_KEY)
    )
    assert not_allowed.status_code == 403
    unknown = app_client.post("/v1/detect", params={"model": "nope:3"}, files=jpeg)
    assert unknown.status_code == 422 and "nope" in unknown.json()["detail"]
    typo = app_client.post("/v1/detect", params={"cof": 0.5}, files=jpeg)
    assert typo.status_code == 422 and "cof" in typo.text
    bad_form = app_client.post("/v1/detect", data={"conf": "2"}, files=jpeg)
    assert bad_form.status_code == 422 and "conf" in bad_form.text
    no_file = app_client.post("/v1/detect", data={"conf": "0.5"}, files={"other": b"x"})
    assert no_file.status_code == 422 and "'file'" in no_file.json()["detail"]
    empty = app_client.post("/v1/detect", content=b"", headers={"Content-Type": "image/png"})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    text = app_client.post("/v1/detect", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and "multipart" in text.json()["detail"]
    huge = app_client.post(
        "/v1/detect", content=b"\xff" * 200_001, headers={"Content-Type": "image/jpeg"}
    )
    assert huge.status_code == 413
    bad_json = app_client.post("/v1/detect", json={"image": {"bucket": INPUT_BUCKET}})
    assert bad_json.status_code == 422 and "key" in bad_json.text


def test_detect_is_429_while_the_queue_is_full(
    redis_url: str, s3_endpoint: str, object_store: ObjectStore
) -> None:
    settings = _settings(redis_url, s3_endpoint, queue_limit=2)

    def uploads() -> int:
        return len(object_store.list_keys(UPLOADS_BUCKET, "uploads/", keys.IMAGE_SUFFIXES, 10**6))

    with TestClient(create_app(settings), headers=_auth(API_KEY)) as limited:
        images = [{"bucket": INPUT_BUCKET, "key": f"{i}.jpg"} for i in range(3)]
        assert limited.post("/v1/jobs", json={"images": images}).status_code == 202
        before = uploads()
        refused = limited.post(
            "/v1/detect", content=make.jpeg(), headers={"Content-Type": "image/jpeg"}
        )
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert uploads() == before  # refused before its image was stored


def test_the_openapi_schema_documents_detect_and_events(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    detect = paths["/v1/detect"]["post"]
    bodies = detect["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/json"} <= set(bodies)
    assert {"200", "202", "401", "403", "413", "415", "422", "429"} <= set(detect["responses"])
    assert "example" in detect["responses"]["200"]["content"]["application/json"]
    params = {p["name"] for p in detect["parameters"]}
    assert {"model", "timeout", "conf", "imgsz", "classes"} <= params
    events = paths["/v1/jobs/{job_id}/events"]["get"]
    assert "event: end" in events["responses"]["200"]["content"]["text/event-stream"]["example"]
    wait = [p for p in paths["/v1/jobs/{job_id}"]["get"]["parameters"] if p["name"] == "wait"]
    assert wait and "Long-poll" in wait[0]["description"]


def test_detect_with_a_body_that_is_not_json_is_422(app_client: TestClient) -> None:
    broken = app_client.post(
        "/v1/detect", content=b"\x14\xff", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and "json" in broken.text.lower()
