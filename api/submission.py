"""Putting a job on the queue: what ``POST /v1/jobs`` and ``POST /v1/detect`` share.

The caller pins the model first (``api.pinning``), then asks ``check_backpressure``
before it does any work a refusal would waste, then ``enqueue``s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import HTTPException, status

from api.auth import Principal
from api.backpressure import retry_after_s
from api.deps import Services
from yoloq import keys
from yoloq.chunking import split_into_chunks
from yoloq.job_store import NotReplicated
from yoloq.object_store import ObjectAccessDenied, ObjectNotFound, StorageUnavailable
from yoloq.schemas import (
    ChunkTask,
    ImageRef,
    InferenceParams,
    JobAccepted,
    JobStatus,
    ModelPin,
    ObjectLocation,
    PlanSpec,
    Priority,
)

log = logging.getLogger(__name__)


def check_access(images: list[ImageRef], principal: Principal, services: Services) -> None:
    """403 unless the key may read every image."""
    uploads = services.settings.uploads_bucket
    refused = [ref for ref in images if not principal.may_read(ref, uploads)]
    if refused:
        first = refused[0]
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{len(refused)} image(s) are outside what this API key may read, the first "
            f"s3://{first.bucket}/{first.key}; allowed buckets: "
            f"{', '.join(sorted(principal.buckets)) or 'none'}, and your own uploads",
        )


def check_backpressure(services: Services, model: str, images: int) -> None:
    """429 while the model's queue is over its limit. A job meeting an empty queue is
    always taken, whatever its size, so no job is refused for ever."""
    limit = services.settings.queue_limit
    if limit is None:
        return
    done = sum(
        w.images_done
        for w in services.jobs.live_workers(60)
        if any(served.id == model for served in w.models)
    )
    drain = services.drain_rate(model)
    drain.observe(done)
    queued = services.jobs.queued_images_for(model)
    if queued == 0 or queued + images <= limit:
        return
    wait_s = retry_after_s(queued + images - limit, drain.images_per_s())
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"the queue of model {model!r} holds {queued} images (limit {limit}); "
        f"retry in about {wait_s}s",
        headers={"Retry-After": str(wait_s)},
    )


class NotReplicatedError(HTTPException):
    def __init__(self, error: NotReplicated) -> None:
        super().__init__(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the job could not be made durable: {error}; retry (with the same Idempotency-Key)",
            headers={"Retry-After": "1"},
        )


class QueueUnavailable(HTTPException):
    def __init__(self, error: Exception) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, f"the queue is unavailable: {error}")


def enqueue(
    services: Services,
    principal: Principal,
    job_id: str,
    pin: ModelPin,
    images: list[ImageRef],
    params: InferenceParams,
    priority: Priority,
    callback_url: str | None = None,
    inline_image: bytes | None = None,
) -> JobAccepted:
    """Record the job and send its chunks; 503 (and no job) if the queue refuses them.
    ``inline_image``: the bytes of a one-image job's image, held in Redis for its worker
    instead of in S3."""
    settings = services.settings
    model = pin.id
    chunks = split_into_chunks(job_id, model, images, params, settings.chunk_size, priority)
    if inline_image is not None:
        assert len(images) == 1
        chunks = [chunk.model_copy(update={"inline_image": True}) for chunk in chunks]
        services.jobs.put_image(job_id, inline_image, settings.result_ttl_s)
    only_task = chunks[0] if len(chunks) == 1 else None
    if only_task is None:
        # What a lost chunk is sent again from; Redis keeps no image of the job.
        _store_or_503(lambda: services.inputs.write_page(job_id, 0, images))
    _create(
        services,
        principal,
        job_id,
        pin,
        params,
        priority,
        callback_url,
        total=len(images),
        chunks=len(chunks),
        only_task=only_task,
        page_images=0 if only_task else len(chunks) * settings.chunk_size,
    )

    def send_chunks() -> None:
        for chunk in chunks:
            services.queue.send(chunk)

    _send_or_withdraw(services, job_id, model, len(images), send_chunks)
    services.metrics.jobs_submitted.labels(model).inc()
    services.metrics.images_submitted.labels(model).inc(len(images))
    log.info(
        "job %s queued: %d images in %d chunks for model %s at %s priority",
        job_id,
        len(images),
        len(chunks),
        model,
        priority,
    )
    return JobAccepted(id=job_id, status=JobStatus.QUEUED, total=len(images), model=pin)


def enqueue_plan(
    services: Services,
    principal: Principal,
    job_id: str,
    pin: ModelPin,
    spec: PlanSpec,
    params: InferenceParams,
    priority: Priority,
    callback_url: str | None = None,
) -> JobAccepted:
    """Record a prefix or manifest job as ``planning`` and send its first planning step;
    the planner (``workers.planner``) lists its images and sends their chunks."""
    _create(
        services,
        principal,
        job_id,
        pin,
        params,
        priority,
        callback_url,
        total=0,
        chunks=0,
        page_images=services.settings.plan_page_chunks * services.settings.chunk_size,
        plan=spec,
    )
    _send_or_withdraw(
        services, job_id, pin.id, 0, lambda: services.queue.send_plan(job_id, pin.id, priority)
    )
    services.metrics.jobs_submitted.labels(pin.id).inc()
    log.info("job %s planning: %s for model %s", job_id, spec.source, pin.id)
    return JobAccepted(id=job_id, status=JobStatus.PLANNING, total=0, model=pin)


def _send_or_withdraw(
    services: Services, job_id: str, model: str, total: int, send: Callable[[], None]
) -> None:
    """Send the job's messages, or take the job back (and answer 503): a job whose
    chunks or planning step did not all reach the queue would never finish."""
    try:
        send()
    except Exception as error:
        log.exception("could not queue job %s", job_id)
        services.jobs.withdraw(job_id, model, total)
        raise QueueUnavailable(error) from error


def _store_or_503(write: Callable[[], None]) -> None:
    try:
        write()
    except (StorageUnavailable, ObjectAccessDenied, ObjectNotFound) as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the results bucket is unavailable: {error}",
            headers={"Retry-After": "5"},
        ) from error


def _create(
    services: Services,
    principal: Principal,
    job_id: str,
    pin: ModelPin,
    params: InferenceParams,
    priority: Priority,
    callback_url: str | None,
    *,
    total: int,
    chunks: int,
    page_images: int,
    only_task: ChunkTask | None = None,
    plan: PlanSpec | None = None,
) -> None:
    settings = services.settings
    try:
        services.jobs.create(
            job_id,
            tenant=principal.tenant,
            total=total,
            callback_url=callback_url,
            chunks=chunks,
            chunk_size=settings.chunk_size,
            segment_chunks=settings.result_segment_chunks if chunks != 1 or plan else 0,
            model=pin.id,
            params=params,
            priority=priority,
            results=ObjectLocation(bucket=settings.results_bucket, key=keys.results_key(job_id)),
            ttl_s=settings.result_ttl_s,
            only_task=only_task,
            page_images=page_images,
            plan=plan,
            pin=pin,
            replicas=settings.redis_replicas_to_ack,
            replica_timeout_ms=settings.redis_replica_ack_timeout_ms,
        )
    except NotReplicated as error:
        # Not durable, so not accepted: take it back rather than run a job the client
        # was told failed.
        log.warning("%s", error)
        services.jobs.withdraw(job_id, pin.id, total)
        raise NotReplicatedError(error) from error
