"""Submit jobs, read their status and their results."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.auth import CurrentPrincipal, Principal
from api.deps import ServicesDep
from yoloq import keys
from yoloq.chunking import split_into_chunks
from yoloq.schemas import JobAccepted, JobCreate, JobPublic, ObjectLocation, ResultsPage

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PAGE = 1000


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no job with id {job_id!r}")


def _check_job_id(job_id: str) -> None:
    # Ids name S3 keys; anything but our own format is unknown by definition.
    if not keys.JOB_ID_PATTERN.fullmatch(job_id):
        raise _not_found(job_id)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        403: {"description": "An image's bucket is not an allowed input bucket."},
        422: {"description": "The body is invalid or holds too many images."},
        503: {"description": "Redis or the broker is unreachable."},
    },
)
def submit_job(body: JobCreate, services: ServicesDep, principal: CurrentPrincipal) -> JobAccepted:
    settings = services.settings
    if len(body.images) > settings.max_images_per_job:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a job holds at most {settings.max_images_per_job} images and this one has "
            f"{len(body.images)}: split it into several jobs",
        )
    refused = [ref for ref in body.images if not principal.may_read(ref, settings.uploads_bucket)]
    if refused:
        first = refused[0]
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{len(refused)} image(s) are outside what this API key may read, the first "
            f"s3://{first.bucket}/{first.key}; allowed buckets: "
            f"{', '.join(sorted(principal.buckets)) or 'none'}, and your own uploads",
        )

    job_id = uuid.uuid4().hex
    model = settings.queue_model_name
    chunks = split_into_chunks(job_id, model, body.images, body.params, settings.chunk_size)
    services.jobs.create(
        job_id,
        tenant=principal.tenant,
        total=len(body.images),
        chunks=len(chunks),
        model=model,
        params=body.params,
        results=ObjectLocation(bucket=settings.results_bucket, key=keys.results_key(job_id)),
        ttl_s=settings.result_ttl_s,
    )
    try:
        for chunk in chunks:
            services.queue.send(chunk)
    except Exception as error:
        # A job with chunks missing from the queue would never finish: take it back.
        log.exception("could not queue job %s", job_id)
        services.jobs.delete(job_id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the queue is unavailable: {error}"
        ) from error
    services.metrics.jobs_submitted.labels(model).inc()
    services.metrics.images_submitted.labels(model).inc(len(body.images))
    log.info("job %s queued: %d images in %d chunks", job_id, len(body.images), len(chunks))
    return JobAccepted(id=job_id, status="queued", total=len(body.images))  # type: ignore[arg-type]


def _job(job_id: str, services: ServicesDep, principal: Principal) -> tuple[JobPublic, bool]:
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
def get_job(job_id: str, services: ServicesDep, principal: CurrentPrincipal) -> JobPublic:
    return _job(job_id, services, principal)[0]


@router.get("/{job_id}/results", responses={404: {"description": "No such job."}})
def get_results(
    job_id: str,
    services: ServicesDep,
    principal: CurrentPrincipal,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ResultsPage:
    """Results in submission order.

    While a job runs, a page stops at the first item not finished yet, and ``next_offset``
    points at it: ask again later from there. ``next_offset`` is null once the last item
    has been returned.
    """
    job, in_redis = _job(job_id, services, principal)
    total = job.total
    if in_redis:
        window = services.jobs.items(job_id, offset, min(limit, max(0, total - offset)))
        items = []
        for item in window:
            if item is None:
                break
            items.append(item)
    else:
        archived = services.archive.read_results(job_id) or []
        items = archived[offset : offset + limit]
    end = offset + len(items)
    return ResultsPage(items=items, next_offset=end if end < total else None)
