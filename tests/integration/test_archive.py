"""Object store and result archive against the S3 server over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import RESULTS_BUCKET
from yoloq import keys
from yoloq.archive import MIN_COPY_BYTES, PartRef, ResultArchive
from yoloq.object_store import ObjectNotFound, ObjectStore
from yoloq.results import DetectItem, ResultItem
from yoloq.schemas import InferenceParams, JobPublic, JobStatus, Manifest, ObjectLocation


def test_missing_objects_and_buckets_are_not_found(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        object_store.get(RESULTS_BUCKET, "no/such/key")
    with pytest.raises(ObjectNotFound):
        object_store.get("no-such-bucket", "key")
    assert object_store.get_if_exists(RESULTS_BUCKET, "no/such/key") is None
    assert not object_store.bucket_exists("no-such-bucket")


def test_ensure_bucket_is_idempotent(object_store: ObjectStore) -> None:
    name = f"b-{uuid.uuid4().hex[:8]}"
    object_store.ensure_bucket(name)
    object_store.ensure_bucket(name)
    assert object_store.bucket_exists(name)


def _items(chunk: int, n: int, pad: int = 0) -> list[ResultItem]:
    return [
        DetectItem(index=chunk * n + i, bucket="b", key=f"{chunk}-{i}" + "x" * pad, status="ok")
        for i in range(n)
    ]


def test_parts_merge_in_submission_order(object_store: ObjectStore) -> None:
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    parts = {}
    for chunk in (2, 0, 1):  # written out of order, as concurrent workers would
        parts[chunk] = PartRef(7, archive.write_part(job_id, chunk, 7, _items(chunk, 2)))
    archive.write_results(job_id, 3, parts)
    merged = archive.read_results(job_id)
    assert merged is not None
    assert [item.index for item in merged] == list(range(6))
    # A chunk the caller holds (a job of one chunk has no part) is not read.
    archive.write_results(job_id, 1, {}, known={0: _items(0, 2)})
    assert [item.key for item in archive.read_results(job_id) or []] == ["0-0", "0-1"]
    # A chunk with neither is refused, not skipped.
    with pytest.raises(ObjectNotFound, match="no counted part"):
        archive.write_results(job_id, 4, parts)


def test_large_results_are_joined_by_multipart_upload(object_store: ObjectStore) -> None:
    """Parts of 5 MiB and more are copied inside S3; smaller ones are joined into upload
    parts: results.jsonl is every line once, in order, whatever the mix."""
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    # Small, large, large, small, small, large: copies after small parts, and small
    # parts between copies.
    pads = [0, 60_000, 60_000, 0, 0, 60_000]
    parts = {
        chunk: PartRef(1, archive.write_part(job_id, chunk, 1, _items(chunk, 100, pad)))
        for chunk, pad in enumerate(pads)
    }
    assert sum(p.size >= MIN_COPY_BYTES for p in parts.values()) == 3
    archive.write_results(job_id, len(pads), parts)
    merged = object_store.get(RESULTS_BUCKET, keys.results_key(job_id))
    joined = b"".join(
        object_store.get(RESULTS_BUCKET, keys.result_part_key(job_id, c, 1)) for c in parts
    )
    assert merged == joined
    assert [item.index for item in archive.read_results(job_id) or []] == list(range(600))


def test_segments_joined_ahead_stand_for_their_parts(object_store: ObjectStore) -> None:
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    parts = {c: PartRef(1, archive.write_part(job_id, c, 1, _items(c, 3))) for c in range(7)}
    # Segments of 3 chunks: 0-2 and 3-5 joined; chunk 6 (a short last segment) is not.
    segments = {s: archive.write_segment(job_id, s, range(3 * s, 3 * s + 3), parts) for s in (0, 1)}
    for chunk in range(6):  # the parts are not read again
        object_store.delete(RESULTS_BUCKET, keys.result_part_key(job_id, chunk, 1))
    archive.write_results(job_id, 7, parts, segments=segments, segment_chunks=3)
    assert [item.index for item in archive.read_results(job_id) or []] == list(range(21))


def test_a_page_is_read_from_the_parts_that_hold_it(object_store: ObjectStore) -> None:
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    parts = {c: PartRef(3, archive.write_part(job_id, c, 3, _items(c, 4))) for c in (0, 1, 3)}
    page = archive.read_items(job_id, 2, 5, 4, parts)
    assert [item.index for item in page] == [2, 3, 4, 5, 6]
    # Stops at the first chunk not counted yet (chunk 2).
    assert [item.index for item in archive.read_items(job_id, 6, 8, 4, parts)] == [6, 7]
    archive.write_parts_index(job_id, 4, parts)
    assert archive.read_parts_index(job_id) == (4, parts)


def test_manifest_round_trip(object_store: ObjectStore) -> None:
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    now = datetime.now(tz=UTC)
    job = JobPublic(
        id=job_id, status=JobStatus.SUCCEEDED, total=1, done=1, failed=0, created_at=now,
        started_at=now, finished_at=now,
        results=ObjectLocation(bucket=RESULTS_BUCKET, key=keys.results_key(job_id)),
    )  # fmt: skip
    manifest = Manifest(job=job, tenant="t", model="m", params=InferenceParams(), chunks=1)
    archive.write_manifest(manifest)
    assert archive.read_manifest(job_id) == manifest
    assert archive.read_manifest(uuid.uuid4().hex) is None
