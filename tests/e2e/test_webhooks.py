"""Webhooks over real HTTP: signed, retried after a failure, only to allowed hosts."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET, WEBHOOK_SECRET
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore
from yoloq.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class Receiver:
    """Answers 503 to the first delivery and 200 after, recording each one."""

    url: str
    calls: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    calls: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 503 if not calls else 200
            calls.append((status, dict(self.headers.items()), body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/yoloq", calls)
    server.shutdown()
    server.server_close()


def test_webhook_is_signed_and_retried(
    api_url: str, worker: str, object_store: ObjectStore, receiver: Receiver
) -> None:
    key = f"webhooks/{uuid.uuid4().hex}.jpg"
    object_store.put(INPUT_BUCKET, key, make.jpeg())
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"images": [{"bucket": INPUT_BUCKET, "key": key}], "callback_url": receiver.url}
    job_id = httpx.post(f"{api_url}/v1/jobs", json=body, headers=auth).json()["id"]

    wait_until(lambda: any(status == 200 for status, _, _ in receiver.calls), 90, "the webhook")
    assert [status for status, _, _ in receiver.calls] == [503, 200]  # retried once, then done
    _, headers, payload = receiver.calls[-1]
    assert verify(WEBHOOK_SECRET, headers[TIMESTAMP_HEADER], payload, headers[SIGNATURE_HEADER])
    assert not verify("wrong", headers[TIMESTAMP_HEADER], payload, headers[SIGNATURE_HEADER])
    summary = json.loads(payload)
    assert (summary["id"], summary["status"], summary["done"]) == (job_id, "succeeded", 1)


def test_callbacks_only_to_allowed_hosts(api_url: str) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for url in ("http://10.0.0.5/hook", "http://metadata.google.internal/", "ftp://127.0.0.1/"):
        body = {"images": [{"bucket": INPUT_BUCKET, "key": "a.jpg"}], "callback_url": url}
        response = httpx.post(f"{api_url}/v1/jobs", json=body, headers=auth)
        assert response.status_code == 422, url
        assert "127.0.0.1" in response.json()["detail"]
