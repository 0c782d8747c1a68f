"""One chunk, from object keys to recorded results. Knows nothing of Celery."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from workers.images import Image, ImageError, decode_image
from workers.inference import InferenceInput
from workers.runtime import WorkerRuntime
from yoloq.object_store import ObjectNotFound, ObjectStore
from yoloq.schemas import (
    ChunkTask,
    Detection,
    ImageRef,
    InferenceParams,
    ItemError,
    ItemErrorCode,
    JobPublic,
    JobStatus,
    Manifest,
    ResultItem,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkOutcome:
    job_id: str
    chunk: int
    images: int
    errors: int
    newly_counted: bool
    job_complete: bool


def load_image(store: ObjectStore, ref: ImageRef) -> Image | ItemError:
    """Fetch and decode one image; a failure becomes that item's error, never an exception."""
    try:
        data = store.get(ref.bucket, ref.key)
    except ObjectNotFound:
        return ItemError(
            code=ItemErrorCode.NOT_FOUND, message=f"s3://{ref.bucket}/{ref.key} does not exist"
        )
    except (BotoCoreError, ClientError) as error:
        return ItemError(
            code=ItemErrorCode.STORAGE_UNAVAILABLE,
            message=f"could not read s3://{ref.bucket}/{ref.key}: {error}",
        )
    try:
        return decode_image(data)
    except ImageError as error:
        return ItemError(code=error.code, message=error.message)


@dataclass(frozen=True)
class Staged:
    """An image fetched, decoded and handed to the batcher; or the reason it could not be."""

    error: ItemError | None = None
    width: int = 0
    height: int = 0
    detections: Future[list[Detection]] | None = None


def stage(runtime: WorkerRuntime, ref: ImageRef, params: InferenceParams) -> Staged:
    """Runs on an I/O thread, so downloads and decodes overlap inference."""
    loaded = load_image(runtime.store, ref)
    if isinstance(loaded, ItemError):
        return Staged(error=loaded)
    height, width = loaded.shape[:2]
    future = runtime.batcher.submit(InferenceInput(loaded, params))
    return Staged(width=width, height=height, detections=future)


def _result_item(index: int, ref: ImageRef, staged: Staged) -> ResultItem:
    item = ResultItem(index=index, bucket=ref.bucket, key=ref.key, status="ok")
    if staged.error is not None:
        return item.model_copy(update={"status": "error", "error": staged.error})
    item = item.model_copy(update={"width": staged.width, "height": staged.height})
    assert staged.detections is not None
    try:
        return item.model_copy(update={"detections": staged.detections.result()})
    except Exception as error:
        log.exception("inference failed for s3://%s/%s", ref.bucket, ref.key)
        failure = ItemError(
            code=ItemErrorCode.INFERENCE_FAILED, message=f"inference failed: {error}"
        )
        return item.model_copy(update={"status": "error", "error": failure})


def run_chunk(runtime: WorkerRuntime, task: ChunkTask) -> list[ResultItem]:
    """Fetch, decode and detect; one result per image, in order."""
    staged = list(runtime.io_pool.map(lambda ref: stage(runtime, ref, task.params), task.images))
    return [
        _result_item(task.start + offset, ref, item)
        for offset, (ref, item) in enumerate(zip(task.images, staged, strict=True))
    ]


def final_status(job: JobPublic) -> JobStatus:
    if job.failed == 0:
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if job.failed >= job.total else JobStatus.PARTIAL


def finalize_job(runtime: WorkerRuntime, job_id: str) -> None:
    """Merge results into results.jsonl, set the final status, write the manifest.

    Every step is idempotent, so a redelivered last chunk simply does it again.
    """
    record = runtime.jobs.get(job_id)
    if record is None:
        log.warning("job %s expired before it could be finalized", job_id)
        return
    runtime.archive.write_results(job_id, record.chunks)
    runtime.jobs.finish(job_id, final_status(record.public))
    record = runtime.jobs.get(job_id)
    assert record is not None
    runtime.archive.write_manifest(
        Manifest(job=record.public, model=record.model, params=record.params, chunks=record.chunks)
    )
    log.info("job %s finished: %s", job_id, record.public.status)


def process_chunk(runtime: WorkerRuntime, task: ChunkTask) -> ChunkOutcome:
    """Run a chunk and record it: the result part in S3 first, then the count in Redis,
    so whenever Redis says a chunk is done, its part is in S3."""
    runtime.jobs.mark_running(task.job_id)
    items = run_chunk(runtime, task)
    runtime.archive.write_part(task.job_id, task.chunk, items)
    completion = runtime.jobs.complete_chunk(task.job_id, task.chunk, items)
    if completion.newly_counted:
        runtime.stats.count_images(len(items))
    if completion.job_complete:
        finalize_job(runtime, task.job_id)
    return ChunkOutcome(
        job_id=task.job_id,
        chunk=task.chunk,
        images=len(items),
        errors=sum(1 for item in items if item.status == "error"),
        newly_counted=completion.newly_counted,
        job_complete=completion.job_complete,
    )
