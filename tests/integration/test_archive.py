"""Object store and result archive against the S3 server over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import RESULTS_BUCKET
from yoloq import keys
from yoloq.archive import ResultArchive
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


def test_parts_merge_in_submission_order(object_store: ObjectStore) -> None:
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    job_id = uuid.uuid4().hex
    for chunk in (2, 0, 1):  # written out of order, as concurrent workers would
        items: list[ResultItem] = [
            DetectItem(index=chunk * 2 + i, bucket="b", key=f"{chunk}-{i}", status="ok")
            for i in range(2)
        ]
        archive.write_part(job_id, chunk, items)
    assert archive.write_results(job_id, chunks=3) == 6
    in_memory = {2: archive.read_part(job_id, 2)}
    object_store.client.delete_object(Bucket=RESULTS_BUCKET, Key=keys.result_part_key(job_id, 2))
    assert archive.write_results(job_id, chunks=3, known=in_memory) == 6
    merged = archive.read_results(job_id)
    assert merged is not None
    assert [item.index for item in merged] == list(range(6))
    # Rewriting a part (a redelivered chunk) replaces it: still one line per image.
    archive.write_part(job_id, 2, in_memory[2])
    archive.write_part(job_id, 1, archive.read_part(job_id, 1))
    archive.write_results(job_id, chunks=3)
    assert len(object_store.get(RESULTS_BUCKET, keys.results_key(job_id)).splitlines()) == 6


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
