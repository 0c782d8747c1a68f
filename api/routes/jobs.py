"""Submit jobs, read their status and their results."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import CurrentPrincipal, Principal
from api.deps import Services, ServicesDep
from api.pinning import pin_model
from api.submission import check_access, check_backpressure, enqueue, enqueue_plan
from api.waiting import wait_for
from yoloq import keys
from yoloq.coco import to_coco
from yoloq.job_results import read_items
from yoloq.object_store import ObjectNotFound
from yoloq.results import ResultItem, ResultsPage
from yoloq.schemas import (
    CocoResults,
    ImageRef,
    JobAccepted,
    JobCreate,
    JobPublic,
    JobStatus,
    ManifestSource,
    PlanSpec,
    PrefixSource,
)
from yoloq.settings import Settings
from yoloq.webhooks import host_allowed

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 1000


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no job with id {job_id!r}")


def _check_job_id(job_id: str) -> None:
    # Ids name S3 keys; anything but our own format is unknown by definition.
    if not keys.JOB_ID_PATTERN.fullmatch(job_id):
        raise _not_found(job_id)


def _most_images(services: Services, principal: Principal) -> int:
    return principal.max_images_per_job or services.settings.max_images_per_job


def _images(body: JobCreate, services: Services, principal: Principal) -> list[ImageRef]:
    """A list job's images, checked: not too many, and each one readable by the key."""
    assert body.images is not None
    most = _most_images(services, principal)
    if len(body.images) > most:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a job holds at most {most} images and this one has {len(body.images)}: "
            "split it into several jobs",
        )
    check_access(body.images, principal, services)
    return body.images


def _plan(body: JobCreate, services: Services, principal: Principal) -> PlanSpec:
    """What the planner will list for a prefix or manifest job. What can be checked at
    once is, so a mistake gets its answer now: the key may read it, the bucket exists,
    a prefix holds images (in its first page of keys), a manifest exists."""
    source: PrefixSource | ManifestSource
    uploads = services.settings.uploads_bucket
    if body.source is not None:
        source = body.source
        where = f"s3://{source.bucket}/{source.prefix}"
        readable = ImageRef(bucket=source.bucket, key=source.prefix or "/")
    else:
        assert body.manifest is not None
        source = body.manifest
        where = f"s3://{source.bucket}/{source.key}"
        readable = ImageRef(bucket=source.bucket, key=source.key)
    if not principal.may_read(readable, uploads):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key may not read {where}")
    try:
        if isinstance(source, PrefixSource):
            found, more = services.store.list_page(source.bucket, source.prefix, "", 1000)
            if not more and not any(k.lower().endswith(tuple(keys.IMAGE_SUFFIXES)) for k in found):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"no images under {where} "
                    f"(looked for {', '.join(sorted(keys.IMAGE_SUFFIXES))})",
                )
        else:
            services.store.size(source.bucket, source.key)
    except ObjectNotFound as error:
        missing = "no manifest at" if isinstance(source, ManifestSource) else "no bucket for"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{missing} {where}: {error}"
        ) from error
    most = _most_images(services, principal)
    limit = body.source.limit if body.source is not None else None
    return PlanSpec(
        source=source,
        most=min(limit or most, most),
        buckets=sorted(principal.buckets),
        uploads_bucket=uploads,
        tenant=principal.tenant,
    )


def _check_callback(body: JobCreate, settings: Settings) -> None:
    if body.callback_url is None:
        return
    if not settings.webhook_allowed_hosts or not settings.webhook_secret:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "webhooks are not enabled here (YOLOQ_WEBHOOK_ALLOWED_HOSTS, YOLOQ_WEBHOOK_SECRET)",
        )
    if not host_allowed(body.callback_url, settings.webhook_allowed_hosts):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"callback_url must be http(s) to one of: {', '.join(settings.webhook_allowed_hosts)}",
        )


def _replay(
    services: Services, principal: Principal, key: str, job_id: str, body: JobCreate, total: int
) -> JobAccepted | None:
    """The job an earlier request with this Idempotency-Key made, if any; 409 if that
    request's body was different."""
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    first = services.jobs.claim_idempotency_key(
        principal.tenant, key, job_id, digest, services.settings.result_ttl_s
    )
    if first is None:
        return None
    first_job, first_digest = first
    if first_digest != digest:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"Idempotency-Key {key!r} was used for a different request (job {first_job}); "
            "use a new key for a new job",
        )
    record = services.jobs.get(first_job)
    job_status = record.public.status if record else JobStatus.QUEUED
    return JobAccepted(
        id=first_job,
        status=job_status,
        total=record.public.total if record else total,
        model=record.public.model if record else None,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        401: {"description": "No API key, or an unknown one."},
        403: {"description": "An image or the model is outside what the API key may use."},
        409: {"description": "The Idempotency-Key was used for a different request."},
        422: {
            "description": "The body is invalid, holds too many images, or names a model, "
            "version or alias the registry does not have."
        },
        429: {"description": "The model's queue is full; see Retry-After."},
        503: {"description": "Redis or the broker is unreachable."},
    },
)
def submit_job(
    body: JobCreate,
    services: ServicesDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Retry safely: the same key and body return the first job.",
        ),
    ] = None,
) -> JobAccepted:
    settings = services.settings
    _check_callback(body, settings)
    images = _images(body, services, principal) if body.images is not None else None
    spec = _plan(body, services, principal) if images is None else None
    job_id = uuid.uuid4().hex
    pin = pin_model(body.model, job_id, settings, services.registry, principal)
    total = len(images) if images is not None else 0
    if idempotency_key:
        replayed = _replay(services, principal, idempotency_key, job_id, body, total)
        if replayed:
            return replayed
    try:
        check_backpressure(services, pin.id, total)
        if spec is not None:
            return enqueue_plan(
                services,
                principal,
                job_id,
                pin,
                spec,
                body.params,
                body.priority,
                body.callback_url,
            )
        assert images is not None
        return enqueue(
            services,
            principal,
            job_id,
            pin,
            images,
            body.params,
            body.priority,
            body.callback_url,
        )
    except HTTPException:
        if idempotency_key:  # refused: the key stays free for the retry
            services.jobs.release_idempotency_key(principal.tenant, idempotency_key)
        raise


def find_job(job_id: str, services: Services, principal: Principal) -> tuple[JobPublic, bool]:
    """The job, and whether Redis still holds it; 404 unless it is the caller's."""
    _check_job_id(job_id)
    record = services.jobs.get(job_id)
    if record is not None:
        if record.tenant != principal.tenant:
            raise _not_found(job_id)
        return record.public, True
    manifest = services.archive.read_manifest(job_id)
    if manifest is None or manifest.tenant != principal.tenant:
        raise _not_found(job_id)
    return manifest.job, False


@router.get("/{job_id}", responses={404: {"description": "No such job."}})
async def get_job(
    job_id: str,
    services: ServicesDep,
    principal: CurrentPrincipal,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            description="Long-poll: answer once the status changes, or after this many "
            "seconds (at most YOLOQ_MAX_WAIT_S), whichever is first.",
        ),
    ] = None,
) -> JobPublic:
    job, in_redis = await run_in_threadpool(find_job, job_id, services, principal)
    if not wait or not in_redis or job.status.is_final:
        return job
    limit = min(wait, services.settings.max_wait_s)
    await wait_for(services, job_id, lambda event: event.status != job.status, limit)
    return (await run_in_threadpool(find_job, job_id, services, principal))[0]


def _items(
    services: Services, job_id: str, offset: int, limit: int, total: int
) -> list[ResultItem]:
    return read_items(services.jobs, services.archive, job_id, offset, limit, total)


def _not_finished(job: JobPublic) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"job {job.id} is {job.status.value} ({job.done}/{job.total} images): the whole "
        "results are there once it ends; page through them meanwhile",
    )


@router.get(
    "/{job_id}/results",
    response_model=ResultsPage | CocoResults,
    responses={
        200: {"description": "A page of results, or with format=coco the whole job as COCO."},
        404: {"description": "No such job."},
        409: {"description": "format=coco on a job that has not ended."},
    },
)
def get_results(
    job_id: str,
    services: ServicesDep,
    principal: CurrentPrincipal,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    format: Annotated[Literal["json", "coco"], Query(description="json pages, or coco")] = "json",
) -> Any:
    """Results in submission order.

    While a job runs, a page stops at the first item not finished yet, and ``next_offset``
    points at it: ask again later from there. ``next_offset`` is null once the last item
    has been returned. ``format=coco`` returns the whole finished job as COCO detection
    JSON (``offset`` and ``limit`` do not apply).
    """
    job, _ = find_job(job_id, services, principal)
    if format == "coco":
        if not job.status.is_final:
            raise _not_finished(job)
        coco = to_coco(_items(services, job_id, 0, job.total, job.total))
        CocoResults.model_validate(coco)
        # As built, not re-serialised: a detect job's annotations carry no nulls for the
        # other tasks' fields, so it stays plain COCO.
        return JSONResponse(coco)
    items = _items(services, job_id, offset, limit, job.total)
    end = offset + len(items)
    # A page cut short on an ended job (cancelled) is its last: no more items will come.
    # While a job is planned, more images may still be listed.
    listing = job.status == JobStatus.PLANNING
    more = (end < job.total or listing) and not (job.status.is_final and len(items) < limit)
    return ResultsPage(items=items, next_offset=end if more else None)


@router.delete(
    "/{job_id}",
    responses={
        404: {"description": "No such job."},
        409: {"description": "The job has already ended."},
    },
)
def cancel_job(job_id: str, services: ServicesDep, principal: CurrentPrincipal) -> JobPublic:
    """Cancel a job: chunks still queued are skipped by the workers and no more results are
    written; what was done stays readable."""
    job, in_redis = find_job(job_id, services, principal)
    record = services.jobs.get(job_id) if in_redis else None
    ended = HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already ended")
    if record is None or job.status.is_final:
        raise ended
    if services.jobs.cancel(job_id, record.model) != JobStatus.CANCELLED:
        raise ended  # it ended between the read and the cancel
    cancelled = services.jobs.get(job_id)
    assert cancelled is not None
    # The durable record, for when Redis has forgotten the job: what was done stays
    # readable from its parts.
    parts = services.jobs.counted_parts(job_id)
    if parts and cancelled.only_task is None:
        services.archive.write_parts_index(job_id, cancelled.chunk_size, parts)
    services.archive.write_manifest(cancelled.manifest())
    log.info(
        "job %s cancelled at %d/%d images", job_id, cancelled.public.done, cancelled.public.total
    )
    return cancelled.public


@router.get(
    "/{job_id}/results.jsonl",
    response_class=Response,
    responses={
        200: {"content": {"application/jsonl": {}}, "description": "Every item, one per line."},
        404: {"description": "No such job."},
        409: {"description": "The job has not ended."},
    },
)
def download_results(job_id: str, services: ServicesDep, principal: CurrentPrincipal) -> Response:
    """The job's results.jsonl from the results bucket, once the job has ended."""
    job, _ = find_job(job_id, services, principal)
    if not job.status.is_final:
        raise _not_finished(job)
    if job.status == JobStatus.CANCELLED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"job {job_id} was cancelled: it has no results.jsonl; page through /results "
            "for what was done before",
        )
    try:
        # Streamed: a job of millions of images is hundreds of MB.
        data = services.store.stream(job.results.bucket, job.results.key)
    except ObjectNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    return StreamingResponse(
        data,
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.jsonl"'},
    )
