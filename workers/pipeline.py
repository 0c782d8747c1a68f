"""One chunk, from object keys to recorded results. Knows nothing of Celery."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from workers import metrics
from workers.images import ImageError, decode_image
from workers.inference import BatchOutput, InferenceInput
from workers.runtime import WorkerRuntime
from workers.serving import ServedModel
from yoloq.archive import PartRef
from yoloq.job_store import ChunkCompletion, JobGone
from yoloq.object_store import (
    ObjectAccessDenied,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    StorageUnavailable,
)
from yoloq.results import ItemError, ItemTimings, ResultItem
from yoloq.schemas import (
    ChunkTask,
    DeadLetter,
    ImageRef,
    ItemErrorCode,
    JobPublic,
    JobStatus,
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
    where = f"s3://{ref.bucket}/{ref.key}"
    try:
        return store.get(ref.bucket, ref.key, max_bytes=max_bytes)
    except ObjectTooLarge as error:
        return ItemError(code=ItemErrorCode.TOO_LARGE, message=f"{error} (YOLOQ_MAX_IMAGE_BYTES)")
    except ObjectNotFound:
        return ItemError(code=ItemErrorCode.NOT_FOUND, message=f"{where} does not exist")
    except ObjectAccessDenied:
        return ItemError(
            code=ItemErrorCode.ACCESS_DENIED,
            message=f"the workers' credentials may not read {where}",
        )
    except StorageUnavailable as error:
        return ItemError(code=ItemErrorCode.STORAGE_UNAVAILABLE, message=str(error))
    except (BotoCoreError, ClientError) as error:
        return ItemError(
            code=ItemErrorCode.STORAGE_UNAVAILABLE, message=f"could not read {where}: {error}"
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


def fetch_inline(runtime: WorkerRuntime, job_id: str) -> bytes | ItemError:
    """The image a ``POST /v1/detect`` sent through Redis."""
    data = runtime.jobs.image(job_id)
    if data is None:
        return ItemError(
            code=ItemErrorCode.NOT_FOUND,
            message="the image sent with this request is no longer held (its job expired)",
        )
    return data


def stage(
    runtime: WorkerRuntime,
    model: ServedModel,
    ref: ImageRef,
    task: ChunkTask,
    queue_s: float,
) -> Staged:
    """Runs on an I/O thread, so downloads and decodes overlap inference. The image holds
    a staging slot and was announced to the batcher: once submitted, its slot is freed
    when its batch has run; if it cannot be submitted, both are given back now."""
    submitted = False
    try:
        staged = _fetch_and_decode(runtime, model, ref, task, queue_s)
        if staged.output is not None:
            submitted = True
            staged.output.add_done_callback(lambda _: runtime.staging_slots.release())
        return staged
    finally:
        if not submitted:
            _unstage(runtime)


def _unstage(runtime: WorkerRuntime) -> None:
    runtime.batcher.withdraw()
    runtime.staging_slots.release()


def _fetch_and_decode(
    runtime: WorkerRuntime,
    model: ServedModel,
    ref: ImageRef,
    task: ChunkTask,
    queue_s: float,
) -> Staged:
    params = task.params
    started = time.perf_counter()
    if task.inline_image:
        data = fetch_inline(runtime, task.job_id)
    else:
        data = fetch(runtime.store, ref, runtime.settings.max_image_bytes)
    fetched = time.perf_counter()
    timings = ItemTimings(queue_s=queue_s, download_s=fetched - started)
    metrics.STAGE_SECONDS.labels(*model.labels, "download").observe(timings.download_s or 0.0)
    if isinstance(data, ItemError):
        return Staged(timings, error=data)
    try:
        image = decode_image(data, runtime.settings.max_pixels)
    except ImageError as error:
        return Staged(timings, error=ItemError(code=error.code, message=error.message))
    prepared = model.detector.prepare(image, params)
    decoded = time.perf_counter()
    timings = timings.model_copy(update={"decode_s": decoded - fetched})
    metrics.STAGE_SECONDS.labels(*model.labels, "decode").observe(decoded - fetched)
    height, width = prepared.original_shape
    output = runtime.batcher.submit(InferenceInput(model, prepared, params), announced=True)
    return Staged(timings, width=width, height=height, output=output, submitted_at=decoded)


def _timed_out(item: ResultItem, soft_limit_s: float) -> ResultItem:
    error = ItemError(
        code=ItemErrorCode.TIMEOUT,
        message=f"not done within {soft_limit_s:g}s of its chunk starting "
        "(YOLOQ_CHUNK_SOFT_LIMIT_S)",
    )
    return item.model_copy(update={"status": "error", "error": error})


def _result_item(
    model: ServedModel,
    index: int,
    ref: ImageRef,
    staged: Staged,
    deadline: float,
    soft_limit_s: float,
) -> ResultItem:
    item = model.new_item(index, ref, status="ok")
    if staged.error is not None:
        return item.model_copy(update={"status": "error", "error": staged.error})
    item = item.model_copy(update={"width": staged.width, "height": staged.height})
    assert staged.output is not None
    try:
        output = staged.output.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return _timed_out(item, soft_limit_s)
    except Exception as error:
        log.exception("inference failed for s3://%s/%s", ref.bucket, ref.key)
        failure = ItemError(
            code=ItemErrorCode.INFERENCE_FAILED, message=f"inference failed: {error}"
        )
        return item.model_copy(update={"status": "error", "error": failure})
    batch_wait_s = max(0.0, output.finished_at - staged.submitted_at - output.inference_s)
    metrics.STAGE_SECONDS.labels(*model.labels, "batch_wait").observe(batch_wait_s)
    timings = staged.timings.model_copy(
        update={
            "batch_wait_s": batch_wait_s,
            "inference_s": output.inference_s,
            "batch_images": output.batch_images,
        }
    )
    prediction = output.prediction
    if prediction.classes is not None:
        return item.model_copy(update={"classes": prediction.classes, "timings": timings})
    return item.model_copy(update={"detections": prediction.detections, "timings": timings})


class ModelNotServed(Exception):
    """A chunk for a model version this worker does not (or no longer) serve."""


def served_model(runtime: WorkerRuntime, task: ChunkTask) -> ServedModel:
    model = runtime.models.get(task.model)
    if model is None:
        raise ModelNotServed(
            f"job {task.job_id} chunk {task.chunk} is for model {task.model}, which this "
            f"worker does not serve (it serves: {', '.join(runtime.models) or 'nothing'})"
        )
    return model


def run_chunk(runtime: WorkerRuntime, task: ChunkTask, deadline: float) -> list[ResultItem]:
    """Fetch, decode and run the chunk's model; one result per image, in order. Images
    not done by ``deadline`` (``time.monotonic()``, the soft limit) are ``timeout``
    errors. Every item says which model version ran it."""
    model = served_model(runtime, task)
    queue_s = max(0.0, time.time() - task.queued_at)
    metrics.STAGE_SECONDS.labels(*model.labels, "queue").observe(queue_s)
    soft_limit_s = runtime.settings.chunk_soft_limit_s
    staging: list[Future[Staged] | None] = []
    for offset, ref in enumerate(task.images):
        if offset in task.invalid:
            staging.append(None)
            continue
        # A slot per image between download and the model, shared by every chunk the
        # worker holds, bounds the decoded images waiting in memory.
        if not runtime.staging_slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            staging.append(None)
            continue
        # Told an image is coming, the batcher waits for it to fill a batch; with none
        # coming it waits for nothing.
        runtime.batcher.announce(1)
        staging.append(runtime.io_pool.submit(stage, runtime, model, ref, task, queue_s))
    items = []
    for offset, (ref, future) in enumerate(zip(task.images, staging, strict=True)):
        index = task.start + offset
        if offset in task.invalid:
            error = ItemError(code=ItemErrorCode.INVALID_INPUT, message=task.invalid[offset])
            items.append(model.new_item(index, ref, status="error", error=error))
            continue
        try:
            if future is None:
                raise FutureTimeout
            staged = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if future is not None and future.cancel():  # never started: give back its slot
                _unstage(runtime)
            items.append(_timed_out(model.new_item(index, ref, status="ok"), soft_limit_s))
            continue
        items.append(_result_item(model, index, ref, staged, deadline, soft_limit_s))
    timed_out = sum(1 for item in items if item.error and item.error.code == ItemErrorCode.TIMEOUT)
    if timed_out:
        log.warning(
            "job %s chunk %d: %d image(s) not done within the soft limit of %gs",
            task.job_id,
            task.chunk,
            timed_out,
            soft_limit_s,
        )
    return items


def final_status(job: JobPublic) -> JobStatus:
    if job.failed == 0:
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if job.failed >= job.total else JobStatus.PARTIAL


def finalize_job(
    runtime: WorkerRuntime, job_id: str, known: dict[int, list[ResultItem]] | None = None
) -> None:
    """Join the parts into results.jsonl, set the final status, write the manifest.
    ``known``: a job of one chunk's items, which have no part.

    Every step is idempotent, so a redelivered last chunk simply does it again.
    """
    record = runtime.jobs.get(job_id)
    if record is None:
        log.warning("job %s expired before it could be finalized", job_id)
        return
    parts = runtime.jobs.counted_parts(job_id) if not known else {}
    runtime.archive.write_results(
        job_id, record.chunks, parts, known, record.segments, record.segment_chunks
    )
    if parts:
        runtime.archive.write_parts_index(job_id, record.chunk_size, parts)
    runtime.jobs.finish(job_id, final_status(record.public))
    record = runtime.jobs.get(job_id)
    assert record is not None
    runtime.archive.write_manifest(record.manifest())
    if parts:
        # Last, so a finaliser killed before it leaves the markers to a redelivery,
        # which finalises again.
        runtime.jobs.forget_chunks(job_id)
    log.info("job %s finished: %s", job_id, record.public.status)
    if record.callback_url and runtime.jobs.claim_webhook(job_id):
        runtime.on_job_finished(job_id)


def _has_one_chunk(task: ChunkTask) -> bool:
    """A job of one chunk keeps its items in Redis and writes no part: results.jsonl is
    written from them right after the count (one PUT less per small job), and if the
    worker dies in between, the redelivery finds them in Redis."""
    return task.job_chunks == 1


def _counted_items(runtime: WorkerRuntime, task: ChunkTask, part: PartRef) -> list[ResultItem]:
    if _has_one_chunk(task):
        window = runtime.jobs.items(task.job_id, task.start, len(task.images))
        return [item for item in window if item is not None]
    return runtime.archive.read_part(task.job_id, task.chunk, part.delivery)


def _outcome(task: ChunkTask, items: list[ResultItem], completion: ChunkCompletion) -> ChunkOutcome:
    return ChunkOutcome(
        job_id=task.job_id,
        chunk=task.chunk,
        images=len(items),
        errors=sum(1 for item in items if item.status == "error"),
        newly_counted=completion.newly_counted,
        job_complete=completion.job_complete,
    )


def skipped(task: ChunkTask) -> ChunkOutcome:
    return ChunkOutcome(task.job_id, task.chunk, 0, 0, False, False)


def _labels(runtime: WorkerRuntime, task: ChunkTask) -> tuple[str, str]:
    model = runtime.models.get(task.model)
    return model.labels if model else (task.model, "")


def _write_segment(runtime: WorkerRuntime, job_id: str, segment: int) -> None:
    """This count completed a segment: join its parts now (finalising then reads it as
    one object). Losing it only costs speed: finalising reads the parts instead."""
    record = runtime.jobs.get(job_id)
    if record is None or not record.segment_chunks:
        return
    chunks = range(segment * record.segment_chunks, (segment + 1) * record.segment_chunks)
    parts = runtime.jobs.counted_parts(job_id, list(chunks))
    if len(parts) < len(chunks):
        return
    try:
        size = runtime.archive.write_segment(job_id, segment, chunks, parts)
        runtime.jobs.segment_written(job_id, segment, size)
    except Exception:
        log.warning("job %s: segment %d not joined; its parts will be", job_id, segment)


def _finalize_if_complete(
    runtime: WorkerRuntime, task: ChunkTask, items: list[ResultItem], completion: ChunkCompletion
) -> None:
    if completion.job_complete:
        known = {task.chunk: items} if _has_one_chunk(task) else None
        finalize_job(runtime, task.job_id, known)


def record_chunk(
    runtime: WorkerRuntime, task: ChunkTask, delivery: int, items: list[ResultItem]
) -> ChunkOutcome:
    """Record a chunk's results: the part in S3 first, then the count in Redis, so
    whenever Redis says a chunk is done its part is in S3.

    The part is named by ``delivery`` (this delivery's number, from ``start_chunk``), and
    the count records which part it took: two deliveries running at once write two parts,
    one is counted, and the other deletes its own. A job cancelled while its chunk ran
    gets nothing written. Safe to repeat.
    """
    one_chunk = _has_one_chunk(task)
    # Asked before a part is written; a job of one chunk writes none, and the count
    # itself refuses a cancelled job's chunk.
    if not one_chunk and runtime.jobs.is_cancelled(task.job_id):
        return skipped(task)
    uploading = time.perf_counter()
    size = 0 if one_chunk else runtime.archive.write_part(task.job_id, task.chunk, delivery, items)
    part = PartRef(delivery, size)
    try:
        completion = runtime.jobs.complete_chunk(task, part, items, keep_items=one_chunk)
    except JobGone:
        log.warning("job %s expired while chunk %d ran; dropped", task.job_id, task.chunk)
        return skipped(task)
    if completion.cancelled and one_chunk:
        return skipped(task)
    counted = completion.part_counted
    if not completion.newly_counted and not completion.cancelled and counted is not None:
        if not one_chunk and counted.delivery != delivery:
            runtime.archive.delete_part(task.job_id, task.chunk, delivery)
        items = _counted_items(runtime, task, counted)
    labels = _labels(runtime, task)
    metrics.STAGE_SECONDS.labels(*labels, "upload").observe(time.perf_counter() - uploading)
    outcome = _outcome(task, items, completion)
    if task.inline_image:
        runtime.jobs.forget_image(task.job_id)  # counted: no delivery will read it again
    if completion.completed_segment >= 0:
        _write_segment(runtime, task.job_id, completion.completed_segment)
    if completion.newly_counted:
        runtime.stats.count_images(outcome.images)
        metrics.IMAGES.labels(*labels, "ok").inc(outcome.images - outcome.errors)
        metrics.IMAGES.labels(*labels, "error").inc(outcome.errors)
    _finalize_if_complete(runtime, task, items, completion)
    return outcome


def rerecord_counted(runtime: WorkerRuntime, task: ChunkTask) -> ChunkOutcome:
    """A redelivered chunk that was counted already is not run again: its job is
    finalised if complete, in case the first delivery died before doing so."""
    log.info("job %s chunk %d was already recorded; not run again", task.job_id, task.chunk)
    try:
        # Counts nothing (the chunk is counted); answers how far the job is.
        completion = runtime.jobs.complete_chunk(task, PartRef(0, 0), [])
    except JobGone:
        return skipped(task)
    if completion.cancelled or completion.part_counted is None:
        return skipped(task)
    items = _counted_items(runtime, task, completion.part_counted)
    _finalize_if_complete(runtime, task, items, completion)
    return _outcome(task, items, completion)


def record_poison(
    runtime: WorkerRuntime, task: ChunkTask, deliveries: int, worker: str
) -> ChunkOutcome:
    """Set aside a chunk whose worker died on every delivery: its images become
    ``poison`` errors, so the rest of the job can end, and the task goes to the
    dead-letter list for a person to look at."""
    error = ItemError(
        code=ItemErrorCode.POISON,
        message=(
            f"chunk {task.chunk} of this job was delivered {deliveries - 1} times and never "
            "finished (its worker died, or it was handed back); it was set aside in the "
            "dead-letter list (GET /v1/dead-letters) with the images it held"
        ),
    )
    model = served_model(runtime, task)
    items = [
        model.new_item(task.start + offset, ref, status="error", error=error)
        for offset, ref in enumerate(task.images)
    ]
    outcome = record_chunk(runtime, task, deliveries, items)
    if outcome.newly_counted:
        runtime.jobs.add_dead_letter(
            DeadLetter(
                job_id=task.job_id,
                chunk=task.chunk,
                deliveries=deliveries - 1,
                dead_lettered_at=datetime.now(tz=UTC),
                worker=worker,
                task=task,
            )
        )
        metrics.DEAD_LETTERS.inc()
        log.error(
            "job %s chunk %d (%d images) set aside as poison after %d deliveries",
            task.job_id,
            task.chunk,
            len(items),
            deliveries - 1,
        )
    return outcome
