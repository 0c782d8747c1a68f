"""The S3 client: what it sends for small and large bodies, and the short path of small
GETs and PUTs (yoloq/s3_requests.py) naming and reading objects as boto3 does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from yoloq.object_store import (
    EXPECT_CONTINUE_MIN_BYTES,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
)

BUCKET = "yoloq-results"
# Keys S3 encodes: a space, a plus, non-ASCII letters, reserved characters and a percent.
AWKWARD_KEYS = ["plain/0001.jpg", "with space/a+b=c&d?.jpg", "ünïcödé/日本.png", "100%/~x;y,z@.jpg"]


def _sent_by_boto3(store: ObjectStore) -> list[tuple[str, int, bool]]:
    sent: list[tuple[str, int, bool]] = []

    def record(request: Any, **_: Any) -> None:
        length = int(request.headers.get("Content-Length", 0))
        sent.append((request.method, length, "Expect" in request.headers))

    # The least specific event runs after the store's own handler.
    store.client.meta.events.register("before-send", record)
    return sent


def test_a_small_put_sends_its_body_at_once_and_a_large_one_asks_first(
    s3_endpoint: str,
) -> None:
    """boto3 sends ``Expect: 100-continue`` with every PUT, a round trip before the body
    (20 ms more per PUT through a proxy adding 10 ms each way); the store keeps it only
    for bodies of 2 MiB or more. A small PutObject does not go through boto3 at all."""
    store = ObjectStore(s3_endpoint)
    store.ensure_bucket(BUCKET)
    sent = _sent_by_boto3(store)
    store.put(BUCKET, "expect/small.json", b"{}" * 1000)
    assert sent == []  # the short path
    upload = store.start_multipart(BUCKET, "expect/large.bin", "application/octet-stream")
    small = store.upload_part(BUCKET, "expect/large.bin", upload, 1, b"y" * 1000)
    large = b"x" * EXPECT_CONTINUE_MIN_BYTES
    etag = store.upload_part(BUCKET, "expect/large.bin", upload, 2, large)
    store.abort_multipart(BUCKET, "expect/large.bin", upload)
    bodies = [(length, expect) for method, length, expect in sent if length > 0]
    assert bodies == [(1000, False), (EXPECT_CONTINUE_MIN_BYTES, True)]
    assert small and etag
    assert store.get(BUCKET, "expect/small.json") == b"{}" * 1000


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_the_short_path_names_objects_as_boto3_does(s3_endpoint: str, key: str) -> None:
    """Written by one path and read by the other, both ways: a key encoded differently
    would name another object (and, on a server that checks signatures, fail to sign)."""
    store = ObjectStore(s3_endpoint)
    assert store.requests is not None
    sent = _sent_by_boto3(store)
    data = uuid.uuid4().bytes * 100
    store.put(BUCKET, key, data, "image/jpeg")
    read = store.client.get_object(Bucket=BUCKET, Key=key)
    assert read["Body"].read() == data and read["ContentType"] == "image/jpeg"
    again = uuid.uuid4().bytes
    store.client.put_object(Bucket=BUCKET, Key=key, Body=again)
    assert store.get(BUCKET, key) == again
    assert [method for method, _, _ in sent] == ["GET", "PUT"]  # only the direct calls


def test_the_short_path_reports_missing_and_oversized_objects(s3_endpoint: str) -> None:
    store = ObjectStore(s3_endpoint)
    with pytest.raises(ObjectNotFound, match="does not exist"):
        store.get(BUCKET, f"missing/{uuid.uuid4()}.jpg")
    assert store.get_if_exists(BUCKET, f"missing/{uuid.uuid4()}.jpg") is None
    with pytest.raises(ObjectNotFound):
        store.get(f"no-such-bucket-{uuid.uuid4().hex[:8]}", "a.jpg")
    store.put(BUCKET, "large/one.bin", b"z" * 5000)
    with pytest.raises(ObjectTooLarge, match="5000 bytes; the limit is 4999"):
        store.get(BUCKET, "large/one.bin", max_bytes=4999)
    # Its body was left unread and the connection given back: the next read works.
    assert store.get(BUCKET, "large/one.bin", max_bytes=5000) == b"z" * 5000


def test_the_short_path_trusts_the_cas_boto3_trusts(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A MinIO behind a private CA is reached with AWS_CA_BUNDLE: the short path must
    verify against that bundle too, or every small GET would fail where boto3 succeeds."""
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    store = ObjectStore(s3_endpoint)
    assert store.requests is not None
    assert store.requests.pool.connection_pool_kw["ca_certs"] == str(bundle)
    assert store.requests.pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
