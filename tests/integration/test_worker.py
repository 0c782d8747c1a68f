"""A real ``yoloq worker`` process, fed chunks through the real broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest

from tests.conftest import RESULTS_BUCKET
from tests.jobs import put_images, submit, wait_final
from yoloq import keys
from yoloq.archive import ResultArchive
from yoloq.chunking import split_into_chunks
from yoloq.job_results import read_items
from yoloq.job_store import JobStore
from yoloq.local_services import ProcessGroup, wait_until
from yoloq.model_files import sha256_of
from yoloq.object_store import ObjectStore
from yoloq.queue import ChunkQueue, make_celery
from yoloq.schemas import InferenceParams, JobStatus
from yoloq.settings import Settings


@pytest.fixture(scope="module")
def queue(stack_env: dict[str, str], worker: str) -> Iterator[ChunkQueue]:
    with mock.patch.dict(os.environ, stack_env):
        settings = Settings()  # as the worker reads it
    app = make_celery(settings)
    yield ChunkQueue(app, settings.queue_model_name)
    app.close()


def test_heartbeat_names_device_model_and_warmth(
    worker: str, job_store: JobStore, model_path: Path
) -> None:
    beat = next(w for w in job_store.live_workers(30) if w.name == worker)
    assert worker.startswith("cpu@")
    assert beat.device == "cpu"
    assert beat.warmed
    assert beat.threads == os.cpu_count()  # not Ultralytics' cores - 1
    [served] = beat.models
    assert served.sha256 == sha256_of(model_path)
    assert (served.id, served.name, served.version) == (model_path.stem, model_path.stem, None)
    assert (served.task, served.format) == ("detect", "pt")


def test_worker_runs_a_job_to_the_end(
    job_store: JobStore, queue: ChunkQueue, object_store: ObjectStore, model_path: Path
) -> None:
    images = put_images(object_store, 6)
    job_id = submit(job_store, object_store, queue, images)
    record = wait_final(job_store, job_id)
    assert record.public.status == JobStatus.SUCCEEDED
    assert (record.public.total, record.public.done, record.public.failed) == (6, 6, 0)
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    # Redis holds none of them: they are read from the parts.
    assert job_store.redis.exists(job_store.keys.job_items(job_id)) == 0
    items = read_items(job_store, archive, job_id, 0, 6, 6)
    assert [item.index for item in items if item] == list(range(6))
    assert [(item.width, item.height) for item in items if item] == [
        (200 + 40 * i, 160 + 20 * i) for i in range(6)
    ]
    # Every item says which weights ran it.
    assert {(i.model, i.version, i.sha256) for i in items if i} == {
        (queue.model, None, sha256_of(model_path))
    }
    assert archive.read_results(job_id) == items
    manifest = archive.read_manifest(job_id)
    assert manifest is not None and manifest.job == record.public


def test_a_redelivered_chunk_changes_nothing(
    job_store: JobStore, queue: ChunkQueue, object_store: ObjectStore
) -> None:
    images = put_images(object_store, 3)
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    before = wait_final(job_store, job_id)
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    results_before = archive.read_results(job_id)

    parts_before = _part_keys(object_store, job_id)
    assert len(parts_before) == 2

    # The broker delivers chunk 0 again, as after a visibility timeout: it is not run
    # again, and writes no second part.
    chunk = split_into_chunks(job_id, queue.model, images, InferenceParams(), 2)[0]
    queue.send(chunk)
    waiting = keys.queue_for_chunk(queue.model, chunk.priority, chunk.chunk)

    def duplicate_done() -> bool:
        # Taken from its queue, and nothing left unacknowledged: the task ran to its end.
        return job_store.redis.llen(waiting) == 0 and job_store.redis.hlen("unacked") == 0

    wait_until(duplicate_done, timeout_s=60, what="the duplicate chunk to be processed")
    after = job_store.get(job_id)
    assert after is not None
    assert (after.public.done, after.public.failed, after.public.status) == (
        3,
        0,
        before.public.status,
    )
    assert archive.read_results(job_id) == results_before
    assert _part_keys(object_store, job_id) == parts_before


def _part_keys(object_store: ObjectStore, job_id: str) -> list[str]:
    prefix = keys.result_part_key(job_id, 0, 0).rpartition("/")[0] + "/"
    listing = object_store.client.list_objects_v2(Bucket=RESULTS_BUCKET, Prefix=prefix)
    return [entry["Key"] for entry in listing.get("Contents", [])]


def test_prometheus_metrics_and_item_timings(
    job_store: JobStore,
    queue: ChunkQueue,
    object_store: ObjectStore,
    stack_env: dict[str, str],
) -> None:
    images = put_images(object_store, 3)
    job_id = submit(job_store, object_store, queue, images)
    wait_final(job_store, job_id)
    for item in read_items(job_store, ResultArchive(object_store, RESULTS_BUCKET), job_id, 0, 3, 3):
        assert item.timings is not None
        t = item.timings
        assert t.queue_s is not None and t.queue_s >= 0
        assert t.download_s and t.decode_s and t.inference_s and t.batch_images
        assert t.batch_wait_s is not None and t.batch_wait_s >= 0

    port = stack_env["YOLOQ_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    # Every per-model metric names the model and its version (none: a weights file);
    # the exposition lists labels in alphabetical order.
    model = f'model="{queue.model}"'
    assert samples[f'yoloq_worker_model_warm{{{model},version=""}}'] == 1
    assert samples[f'yoloq_worker_model_memory_bytes{{{model},version=""}}'] > 0
    assert samples[f'yoloq_worker_images_total{{{model},status="ok",version=""}}'] >= 3
    assert samples[f'yoloq_worker_batch_images_count{{{model},version=""}}'] >= 1
    for stage in ("queue", "download", "decode", "batch_wait", "inference", "upload"):
        key = f'yoloq_worker_stage_seconds_count{{{model},stage="{stage}",version=""}}'
        assert samples[key] >= 1, stage
    # The heartbeat (every second here) reports the batches once it next beats.
    wait_until(
        lambda: any(sum(w.batch_sizes.values()) for w in job_store.live_workers(30)),
        timeout_s=10,
        what="a heartbeat reporting batch sizes",
    )
    beat = next(w for w in job_store.live_workers(30))
    assert sum(beat.batch_sizes.values()) >= 1
    assert 1 <= beat.max_batch == samples[f'yoloq_worker_max_batch_images{{{model},version=""}}']
    assert beat.concurrency == 4  # YOLOQ_WORKER_CONCURRENCY unset


class _RunsACommandWhenUnpickled:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def test_a_pickled_message_is_refused_not_run(
    queue: ChunkQueue, job_store: JobStore, process_group: ProcessGroup, tmp_path: Path
) -> None:
    marker = tmp_path / "executed"
    queue.app.send_task(
        keys.INFER_TASK,
        args=[_RunsACommandWhenUnpickled(f"touch {marker}")],
        queue=queue.queues[0],
        serializer="pickle",
    )
    log = process_group.log_dir / "worker.log"

    def refused() -> bool:
        return "untrusted content of type pickle" in log.read_text(errors="replace")

    wait_until(refused, timeout_s=60, what="the worker to refuse the pickle")
    wait_until(lambda: job_store.redis.llen(queue.queues[0]) == 0, 30, "the queue to empty")
    assert not marker.exists()
    # The worker is still there and still works.
    assert any(w.warmed for w in job_store.live_workers(30))


def test_a_one_chunk_job_writes_its_results_without_a_part(
    job_store: JobStore, queue: ChunkQueue, object_store: ObjectStore
) -> None:
    images = put_images(object_store, 2)
    job_id = submit(job_store, object_store, queue, images, chunk_size=4)
    record = wait_final(job_store, job_id)
    assert record.public.status == JobStatus.SUCCEEDED
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    assert archive.read_results(job_id) == job_store.items(job_id, 0, 2)
    assert _part_keys(object_store, job_id) == []
