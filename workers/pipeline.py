"""One chunk, from object keys to recorded results. Knows nothing of Celery."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from workers.images import Image, ImageError, decode_image
from workers.runtime import WorkerRuntime
from yoloq.object_store import ObjectNotFound, ObjectStore
from yoloq.schemas import (
    ChunkTask,
    Detection,
    ImageRef,
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


def _result_item(
    index: int, ref: ImageRef, loaded: Image | ItemError, detections: list[Detection] | None
) -> ResultItem:
    if isinstance(loaded, ItemError):
        return ResultItem(index=index, bucket=ref.bucket, key=ref.key, status="error", error=loaded)
    height, width = loaded.shape[:2]
    if detections is None:
        error = ItemError(code=ItemErrorCode.INFERENCE_FAILED, message="inference failed")
        return ResultItem(
            index=index,
            bucket=ref.bucket,
            key=ref.key,
            status="error",
            width=width,
            height=height,
            error=error,
        )
    return ResultItem(
        index=index,
        bucket=ref.bucket,
        key=ref.key,
        status="ok",
        width=width,
        height=height,
        detections=detections,
    )


def run_chunk(runtime: WorkerRuntime, task: ChunkTask) -> list[ResultItem]:
    """Fetch, decode and detect; one result per image, in order."""
    loaded = list(runtime.io_pool.map(lambda ref: load_image(runtime.store, ref), task.images))
    decoded = [image for image in loaded if not isinstance(image, ItemError)]
    detections: list[list[Detection]] | None
    try:
        detections = runtime.detector.predict(decoded, task.params)
    except Exception:
        log.exception("inference failed for job %s chunk %d", task.job_id, task.chunk)
        detections = None
    per_image = iter(detections) if detections is not None else None
    items = []
    for offset, (ref, image) in enumerate(zip(task.images, loaded, strict=True)):
        found = None
        if per_image is not None and not isinstance(image, ItemError):
            found = next(per_image)
        items.append(_result_item(task.start + offset, ref, image, found))
    return items


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
        runtime.count_images(len(items))
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
