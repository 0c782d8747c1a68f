"""Prefix and manifest jobs through HTTP and a real worker: planned a page at a time
(8 images to a page in this session's settings), run while they are listed, read back
from their parts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests import image_factory as make
from tests.conftest import API_KEY, INPUT_BUCKET, OTHER_BUCKET
from tests.jobs import check_ledger
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, ItemErrorCode, JobStatus, ManifestSource, PrefixSource


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


def _put_images(object_store: ObjectStore, prefix: str, n: int) -> list[ImageRef]:
    refs = []
    for i in range(n):
        key = f"{prefix}img-{i:03d}.jpg"
        object_store.put(INPUT_BUCKET, key, make.jpeg(96 + 8 * (i % 4), 96, seed=i))
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
    return refs


def test_a_prefix_job_is_listed_page_by_page_and_every_image_comes_back_once(
    client: Client, object_store: ObjectStore, job_store: JobStore
) -> None:
    prefix = f"planned/{uuid.uuid4().hex}/"
    images = _put_images(object_store, prefix, 27)  # 4 pages, the last one short
    object_store.put(INPUT_BUCKET, prefix + "img-005.txt", b"not an image: not listed")
    accepted = client.submit(PrefixSource(bucket=INPUT_BUCKET, prefix=prefix))
    assert accepted.status == JobStatus.PLANNING and accepted.total == 0
    job = client.wait(accepted.id, timeout_s=120)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.total, job.done, job.failed) == (27, 27, 0)
    assert job.planned_at is not None and not job.truncated
    check_ledger(job_store, object_store, accepted.id, images)

    def segments() -> set[int]:
        record = job_store.get(accepted.id)
        return set(record.segments) if record else set()

    # Every 2 chunks (of 4 images; 7 chunks) were joined into a segment as they were counted.
    wait_until(lambda: segments() == {0, 1, 2}, 30, "the segments to be written")
    # Redis holds nothing per item; a page from the middle is read from its parts.
    assert job_store.redis.exists(job_store.keys.job_items(accepted.id)) == 0
    page = client.results_page(accepted.id, offset=10, limit=7)
    assert [(item.index, item.key) for item in page.items] == [
        (n, images[n].key) for n in range(10, 17)
    ]
    assert page.next_offset == 17
    assert [item.index for item in client.results(accepted.id, page_size=5)] == list(range(27))


def test_a_prefix_job_stops_at_its_limit_and_says_so(
    client: Client, object_store: ObjectStore
) -> None:
    prefix = f"planned/{uuid.uuid4().hex}/"
    _put_images(object_store, prefix, 12)
    accepted = client.submit(PrefixSource(bucket=INPUT_BUCKET, prefix=prefix, limit=9))
    job = client.wait(accepted.id, timeout_s=120)
    assert (job.status, job.total, job.truncated) == (JobStatus.SUCCEEDED, 9, True)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_manifest_job_runs_its_lines_and_bad_lines_are_item_errors(
    client: Client, object_store: ObjectStore, job_store: JobStore, kind: str
) -> None:
    prefix = f"manifest/{uuid.uuid4().hex}/"
    images = _put_images(object_store, prefix, 10)
    if kind == "jsonl":
        lines = [json.dumps({"key": ref.key}) for ref in images[:5]]
        lines += ["", "{not json", json.dumps({"bucket": INPUT_BUCKET}), "[1, 2]"]
        lines += [json.dumps({"bucket": OTHER_BUCKET, "key": "x.jpg"})]
        lines += [json.dumps({"bucket": INPUT_BUCKET, "key": ref.key}) for ref in images[5:]]
        bad = {7: "not JSON", 8: "with a string 'key'", 9: "with a string 'key'", 10: "may not"}
    else:
        lines = [ref.key for ref in images[:5]] + ["", f"{OTHER_BUCKET},x.jpg", "a,../b.jpg"]
        lines += [f"{INPUT_BUCKET},{ref.key}" for ref in images[5:]]
        bad = {7: "may not", 8: "not an image reference"}
    manifest = ManifestSource(bucket=INPUT_BUCKET, key=f"{prefix}manifest.{kind}")
    object_store.put(INPUT_BUCKET, manifest.key, ("\n".join(lines) + "\n").encode())

    accepted = client.submit(manifest)
    job = client.wait(accepted.id, timeout_s=120)
    assert job.status == JobStatus.PARTIAL
    assert (job.total, job.failed) == (10 + len(bad), len(bad))
    items = list(client.results(accepted.id))
    errors = {item.key.rpartition("#line=")[2]: item.error for item in items if item.error}
    assert set(errors) == {str(line) for line in bad}
    for line, why in bad.items():
        error = errors[str(line)]
        assert error is not None and error.code == ItemErrorCode.INVALID_INPUT
        assert error.message.startswith(f"line {line}: ") and why in error.message
    ran = [item.key for item in items if item.status == "ok"]
    assert ran == [ref.key for ref in images]
