"""One chunk, from object keys to recorded results. Knows nothing of Celery."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from workers import metrics
from workers.images import ImageError, decode_image
from workers.inference import BatchOutput, InferenceInput
from workers.runtime import WorkerRuntime
from yoloq.object_store import ObjectNotFound, ObjectStore, ObjectTooLarge
from yoloq.schemas import (
    ChunkTask,
    ImageRef,
    InferenceParams,
    ItemError,
    ItemErrorCode,
    ItemTimings,
    JobPublic,
    JobStatus,
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


def fetch(store: ObjectStore, ref: ImageRef, max_bytes: int) -> bytes | ItemError:
    """An image's bytes; a failure becomes that item's error, never an exception."""
    try:
        return store.get(ref.bucket, ref.key, max_bytes=max_bytes)
    except ObjectTooLarge as error:
        return ItemError(code=ItemErrorCode.TOO_LARGE, message=f"{error} (YOLOQ_MAX_IMAGE_BYTES)")
    except ObjectNotFound:
        return ItemError(
            code=ItemErrorCode.NOT_FOUND, message=f"s3://{ref.bucket}/{ref.key} does not exist"
        )
    except (BotoCoreError, ClientError) as error:
        return ItemError(
            code=ItemErrorCode.STORAGE_UNAVAILABLE,
            message=f"could not read s3://{ref.bucket}/{ref.key}: {error}",
        )


@dataclass(frozen=True)
class Staged:
    """An image fetched, decoded and handed to the batcher; or the reason it could not be."""

    timings: ItemTimings
    error: ItemError | None = None
    width: int = 0
    height: int = 0
    output: Future[BatchOutput] | None = None
    submitted_at: float = 0.0


def stage(runtime: WorkerRuntime, ref: ImageRef, params: InferenceParams, queue_s: float) -> Staged:
    """Runs on an I/O thread, so downloads and decodes overlap inference."""
    started = time.perf_counter()
    data = fetch(runtime.store, ref, runtime.settings.max_image_bytes)
    fetched = time.perf_counter()
    timings = ItemTimings(queue_s=queue_s, download_s=fetched - started)
    metrics.STAGE_SECONDS.labels("download").observe(timings.download_s or 0.0)
    if isinstance(data, ItemError):
        return Staged(timings, error=data)
    try:
        image = decode_image(data, runtime.settings.max_pixels)
    except ImageError as error:
        return Staged(timings, error=ItemError(code=error.code, message=error.message))
    decoded = time.perf_counter()
    timings = timings.model_copy(update={"decode_s": decoded - fetched})
    metrics.STAGE_SECONDS.labels("decode").observe(decoded - fetched)
    height, width = image.shape[:2]
    output = runtime.batcher.submit(InferenceInput(image, params))
    return Staged(timings, width=width, height=height, output=output, submitted_at=decoded)


def _result_item(index: int, ref: ImageRef, staged: Staged) -> ResultItem:
    item = ResultItem(index=index, bucket=ref.bucket, key=ref.key, status="ok")
    if staged.error is not None:
        return item.model_copy(update={"status": "error", "error": staged.error})
    item = item.model_copy(update={"width": staged.width, "height": staged.height})
    assert staged.output is not None
    try:
        output = staged.output.result()
    except Exception as error:
        log.exception("inference failed for s3://%s/%s", ref.bucket, ref.key)
        failure = ItemError(
            code=ItemErrorCode.INFERENCE_FAILED, message=f"inference failed: {error}"
        )
        return item.model_copy(update={"status": "error", "error": failure})
    batch_wait_s = max(0.0, output.finished_at - staged.submitted_at - output.inference_s)
    metrics.STAGE_SECONDS.labels("batch_wait").observe(batch_wait_s)
    timings = staged.timings.model_copy(
        update={
            "batch_wait_s": batch_wait_s,
            "inference_s": output.inference_s,
            "batch_images": output.batch_images,
        }
    )
    return item.model_copy(update={"detections": output.detections, "timings": timings})


def run_chunk(runtime: WorkerRuntime, task: ChunkTask) -> list[ResultItem]:
    """Fetch, decode and detect; one result per image, in order."""
    queue_s = max(0.0, time.time() - task.queued_at)
    metrics.STAGE_SECONDS.labels("queue").observe(queue_s)
    staged = list(
        runtime.io_pool.map(lambda ref: stage(runtime, ref, task.params, queue_s), task.images)
    )
    return [
        _result_item(task.start + offset, ref, item)
        for offset, (ref, item) in enumerate(zip(task.images, staged, strict=True))
    ]


def final_status(job: JobPublic) -> JobStatus:
    if job.failed == 0:
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if job.failed >= job.total else JobStatus.PARTIAL


def finalize_job(
    runtime: WorkerRuntime, job_id: str, known: dict[int, list[ResultItem]] | None = None
) -> None:
    """Merge results into results.jsonl, set the final status, write the manifest.

    Every step is idempotent, so a redelivered last chunk simply does it again.
    """
    record = runtime.jobs.get(job_id)
    if record is None:
        log.warning("job %s expired before it could be finalized", job_id)
        return
    runtime.archive.write_results(job_id, record.chunks, known)
    runtime.jobs.finish(job_id, final_status(record.public))
    record = runtime.jobs.get(job_id)
    assert record is not None
    runtime.archive.write_manifest(record.manifest())
    log.info("job %s finished: %s", job_id, record.public.status)
    if record.callback_url and runtime.jobs.claim_webhook(job_id):
        runtime.on_job_finished(job_id)


def _counted_items(runtime: WorkerRuntime, task: ChunkTask) -> list[ResultItem]:
    window = runtime.jobs.items(task.job_id, task.start, len(task.images))
    return [item for item in window if item is not None]


def process_chunk(runtime: WorkerRuntime, task: ChunkTask) -> ChunkOutcome:
    """Run a chunk and record it: the result part in S3 first, then the count in Redis,
    so whenever Redis says a chunk is done, its part is in S3.

    A redelivered chunk that was already counted is not run again: its part is rewritten
    from the counted results and the job finalised if complete. Two deliveries running
    at once both write the part, but only one is counted; the other then rewrites the part
    from what was counted, so S3 and Redis hold the same results. A chunk of a cancelled
    job is skipped, or, if the job was cancelled while it ran, its results are dropped.
    """
    if runtime.jobs.is_cancelled(task.job_id):
        log.info("job %s was cancelled; chunk %d skipped", task.job_id, task.chunk)
        return ChunkOutcome(task.job_id, task.chunk, 0, 0, False, False)
    if runtime.jobs.chunk_counted(task.job_id, task.chunk):
        log.info("job %s chunk %d was already recorded; skipping", task.job_id, task.chunk)
        items = _counted_items(runtime, task)
        # Rewriting the part from Redis repairs it if it went missing; it costs one PUT.
        runtime.archive.write_part(task.job_id, task.chunk, items)
        completion = runtime.jobs.complete_chunk(task.job_id, task.model, task.chunk, items)
    else:
        runtime.jobs.mark_running(task.job_id)
        items = run_chunk(runtime, task)
        if runtime.jobs.is_cancelled(task.job_id):  # cancelled while it ran: write nothing
            return ChunkOutcome(task.job_id, task.chunk, 0, 0, False, False)
        uploading = time.perf_counter()
        runtime.archive.write_part(task.job_id, task.chunk, items)
        completion = runtime.jobs.complete_chunk(task.job_id, task.model, task.chunk, items)
        if not completion.newly_counted and not completion.cancelled:
            items = _counted_items(runtime, task)
            runtime.archive.write_part(task.job_id, task.chunk, items)
        metrics.STAGE_SECONDS.labels("upload").observe(time.perf_counter() - uploading)
    errors = sum(1 for item in items if item.status == "error")
    if completion.newly_counted:
        runtime.stats.count_images(len(items))
        metrics.IMAGES.labels("ok").inc(len(items) - errors)
        metrics.IMAGES.labels("error").inc(errors)
    if completion.job_complete:
        finalize_job(runtime, task.job_id, known={task.chunk: items})
    return ChunkOutcome(
        job_id=task.job_id,
        chunk=task.chunk,
        images=len(items),
        errors=errors,
        newly_counted=completion.newly_counted,
        job_complete=completion.job_complete,
    )
