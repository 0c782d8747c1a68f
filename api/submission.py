"""Putting a job on the queue: what ``POST /v1/jobs`` and ``POST /v1/detect`` share.

The caller pins the model first (``api.pinning``), then asks ``check_backpressure``
before it does any work a refusal would waste, then ``enqueue``s.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException, status

from api.auth import Principal
from api.backpressure import retry_after_s
from api.deps import Services
from yoloq import keys
from yoloq.chunking import split_into_chunks
from yoloq.job_store import NotReplicated
from yoloq.schemas import (
    ImageRef,
    InferenceParams,
    JobAccepted,
    JobStatus,
    ModelPin,
    ObjectLocation,
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
    try:
        services.jobs.create(
            job_id,
            tenant=principal.tenant,
            total=len(images),
            callback_url=callback_url,
            chunks=len(chunks),
            model=model,
            params=params,
            results=ObjectLocation(bucket=settings.results_bucket, key=keys.results_key(job_id)),
            ttl_s=settings.result_ttl_s,
            tasks=chunks,
            pin=pin,
            replicas=settings.redis_replicas_to_ack,
            replica_timeout_ms=settings.redis_replica_ack_timeout_ms,
        )
    except NotReplicated as error:
        # Not durable, so not accepted: take it back rather than run a job the client
        # was told failed.
        log.warning("%s", error)
        services.jobs.withdraw(job_id, model, len(images))
        raise NotReplicatedError(error) from error
    try:
        for chunk in chunks:
            services.queue.send(chunk)
    except Exception as error:
        # A job with chunks missing from the queue would never finish: take it back.
        log.exception("could not queue job %s", job_id)
        services.jobs.withdraw(job_id, model, len(images))
        raise QueueUnavailable(error) from error
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
