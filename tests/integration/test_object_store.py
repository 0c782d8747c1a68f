"""The S3 client: what it sends for small and large bodies."""

from __future__ import annotations

from typing import Any

from yoloq.object_store import EXPECT_CONTINUE_MIN_BYTES, ObjectStore

BUCKET = "yoloq-results"


def test_a_small_put_sends_its_body_at_once_and_a_large_one_asks_first(
    s3_endpoint: str,
) -> None:
    """boto3 sends ``Expect: 100-continue`` with every PUT, a round trip before the body
    (20 ms more per PUT through a proxy adding 10 ms each way); the store keeps it only
    for bodies of 2 MiB or more."""
    store = ObjectStore(s3_endpoint)
    store.ensure_bucket(BUCKET)
    sent: list[tuple[int, bool]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((int(request.headers.get("Content-Length", 0)), "Expect" in request.headers))

    # The least specific event runs after the store's own handler.
    store.client.meta.events.register("before-send", record)
    store.put(BUCKET, "expect/small.json", b"{}" * 1000)
    upload = store.start_multipart(BUCKET, "expect/large.bin", "application/octet-stream")
    large = b"x" * EXPECT_CONTINUE_MIN_BYTES
    etag = store.upload_part(BUCKET, "expect/large.bin", upload, 1, large)
    store.complete_multipart(BUCKET, "expect/large.bin", upload, [etag])
    bodies = [(length, expect) for length, expect in sent if length > 0]
    assert bodies[0] == (2000, False)
    assert (EXPECT_CONTINUE_MIN_BYTES, True) in bodies
    assert store.get(BUCKET, "expect/small.json") == b"{}" * 1000
    assert store.get(BUCKET, "expect/large.bin") == large
