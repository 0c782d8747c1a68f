"""One image answered in one request, and jobs followed by their events, through the
whole stack: uvicorn, Redis, S3, real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import ProcessGroup, free_port, port_open, yoloq_argv
from yoloq.object_store import ObjectStore
from yoloq.results import ResultItem, detections_of
from yoloq.schemas import ImageRef, InferenceParams, JobEvent, JobStatus


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


def _shapes(object_store: ObjectStore, name: str) -> tuple[ImageRef, bytes]:
    data = (Path(__file__).parents[1] / "fixtures" / "samples" / name).read_bytes()
    key = f"detect/{uuid.uuid4().hex}/{name}"
    object_store.put(INPUT_BUCKET, key, data)
    return ImageRef(bucket=INPUT_BUCKET, key=key), data


def _found(item: ResultItem) -> list[tuple[str, list[float]]]:
    return sorted((d.class_name, [round(v, 1) for v in d.box]) for d in detections_of(item))


def test_detect_answers_each_way_with_what_a_job_gets(
    client: Client, object_store: ObjectStore, job_store: JobStore, tmp_path: Path
) -> None:
    ref, data = _shapes(object_store, "sample_s7_00000.jpg")
    params = InferenceParams(imgsz=320)
    accepted = client.submit([ref], params)
    client.wait(accepted.id, timeout_s=120)
    [expected] = list(client.results(accepted.id))
    assert len(detections_of(expected)) >= 3

    path = tmp_path / "frame.jpg"
    path.write_bytes(data)
    for image in (ref, path, data):
        result = client.detect(image, params)
        assert result.item.status == "ok" and result.item.timings is not None
        assert result.item.timings.inference_s and result.item.sha256 == expected.sha256
        assert _found(result.item) == _found(expected), type(image)
        # Answered once the item is recorded; the job ends as its results.jsonl is written.
        job = client.job(result.job_id, wait_s=10)
        assert job.status == JobStatus.SUCCEEDED and job.total == job.done == 1
        [recorded] = list(client.results(result.job_id))
        assert recorded == result.item  # the answer is what the job recorded
        if not isinstance(image, ImageRef):  # sent through Redis, and let go once recorded
            assert "/inline/" in result.item.key and job_store.image(result.job_id) is None


def test_an_image_the_worker_cannot_read_is_422_with_its_job(client: Client) -> None:
    response = client.http.post(
        "/v1/detect", content=make.html(), headers={"Content-Type": "image/jpeg"}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert "not" in body["detail"] and body["item"]["error"]["code"] == "not_an_image"
    assert client.job(body["job_id"], wait_s=10).status == JobStatus.FAILED


def test_wait_follows_events_and_falls_back_to_polling(
    client: Client, object_store: ObjectStore, api_url: str
) -> None:
    refs = [_shapes(object_store, f"sample_s7_0000{i}.jpg")[0] for i in range(8)]
    seen: list[JobEvent] = []
    job = client.wait(client.submit(refs).id, timeout_s=120, on_progress=seen.append)
    assert job.status == JobStatus.SUCCEEDED and seen[-1].status == JobStatus.SUCCEEDED
    assert [e.done for e in seen] == sorted(e.done for e in seen) and seen[-1].done == 8

    # A proxy that cuts event streams (some do): the wait polls instead.
    upstream = httpx.Client()

    def cut_streams(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.RemoteProtocolError("stream cut", request=request)
        answer = upstream.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.read())

    polling = Client(api_url, api_key=API_KEY)
    polling.http = httpx.Client(
        base_url=api_url, transport=httpx.MockTransport(cut_streams), headers=client.http.headers
    )
    with upstream, polling:
        job_id = client.submit(refs[:2]).id
        assert polling.wait(job_id, timeout_s=120, poll_s=0.05).status == JobStatus.SUCCEEDED


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _final_events(url: str, job_ids: list[str]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(job_ids) + 10)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers) as http:

        async def last_event(job_id: str) -> dict[str, Any]:
            name, data = "", {}
            async with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        name = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        data = {"event": name, **json.loads(line.removeprefix("data:"))}
            return data

        return await asyncio.gather(*(last_event(job_id) for job_id in job_ids))


def test_200_event_streams_on_one_api_process_each_see_their_end(
    object_store: ObjectStore,
    stack_env: dict[str, str],
    worker: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProcessGroup(tmp_path / "logs") as group:
        port = free_port()
        api = group.start("api", yoloq_argv("api", "--port", str(port)), stack_env)
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        url = f"http://127.0.0.1:{port}"
        ref, _ = _shapes(object_store, "sample_s7_00001.jpg")
        with Client(url, api_key=API_KEY) as client:
            job_ids = [client.submit([ref], InferenceParams(imgsz=320)).id for _ in range(200)]
        cpu_before, started = _cpu_seconds(api.popen.pid), time.monotonic()
        finals = asyncio.run(_final_events(url, job_ids))
        cpu, wall = _cpu_seconds(api.popen.pid) - cpu_before, time.monotonic() - started

    assert [f["job"] for f in finals] == job_ids
    assert all(f["event"] == "end" and f["status"] == "succeeded" for f in finals), finals[:3]
    with capsys.disabled():
        share = cpu / wall
        print(f"\n200 event streams: {wall:.1f} s, API CPU {cpu:.2f} s ({share:.0%} of a core)")
    # Streams wait on one subscription; the API's CPU is the jobs' events, not the clients.
    assert cpu < 0.5 * wall + 2, (cpu, wall)
