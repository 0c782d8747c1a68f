"""``Client.wait`` rides out a service that is briefly away (a Redis failover: 503), and
gives up on anything else."""

from __future__ import annotations

import httpx
import pytest

from yoloq.client import ApiError, Client

Answer = tuple[int, dict[str, object]]
AWAY: Answer = (503, {"detail": "job store (Redis) unavailable"})
JOB: dict[str, object] = {
    "id": "a" * 32,
    "total": 2,
    "done": 2,
    "failed": 0,
    "created_at": "2026-12-07T00:00:00Z",
    "results": {"bucket": "yoloq-results", "key": "jobs/x/results.jsonl"},
}


def client_answering(answers: list[Answer]) -> tuple[Client, list[str]]:
    """A client whose job polls get ``answers`` in turn; its event stream is away (503)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(503, json={"detail": "job store (Redis) unavailable"})
        code, body = answers.pop(0)
        return httpx.Response(code, json=body)

    client = Client("http://api")
    client.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(handle))
    return client, seen


def test_wait_polls_through_503s_until_the_job_is_final() -> None:
    running: Answer = (200, {**JOB, "status": "running", "done": 1})
    done: Answer = (200, {**JOB, "status": "succeeded"})
    client, seen = client_answering([AWAY, running, AWAY, AWAY, done])
    job = client.wait(str(JOB["id"]), timeout_s=10, poll_s=0.01)
    assert job.status == "succeeded" and job.done == 2
    assert seen.count(f"/v1/jobs/{JOB['id']}") == 5


def test_wait_does_not_ride_out_other_errors() -> None:
    missing: Answer = (404, {"detail": "no such job"})
    client, _ = client_answering([missing])
    with pytest.raises(ApiError) as error:
        client.wait(str(JOB["id"]), timeout_s=10, poll_s=0.01)
    assert error.value.status_code == 404


def test_wait_gives_up_on_an_outage_at_its_deadline() -> None:
    client, _ = client_answering([AWAY] * 1000)
    with pytest.raises(ApiError) as error:
        client.wait(str(JOB["id"]), timeout_s=0.2, poll_s=0.01)
    assert error.value.status_code == 503
