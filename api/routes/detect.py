"""One image in, its result out, in one request: a one-image job at high priority,
through the queue like every other, answered when a worker records it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.auth import CurrentPrincipal, Principal
from api.deps import Services, ServicesDep
from api.pinning import pin_model
from api.routes.images import check_upload, store_upload, upload_suffix
from api.submission import check_access, check_backpressure, enqueue
from api.waiting import wait_for
from yoloq import keys
from yoloq.results import DetectResult, ResultItem
from yoloq.schemas import (
    DetectImage,
    DetectOptions,
    ImageRef,
    ItemErrorCode,
    JobEvent,
    Priority,
)

router = APIRouter(prefix="/v1/detect", tags=["detect"])

PRIORITY: Priority = "high"
"""A request is waiting on it: it goes before the batch jobs of its model."""

CALLERS_FAULT = frozenset(
    {
        ItemErrorCode.NOT_FOUND,
        ItemErrorCode.EMPTY,
        ItemErrorCode.TOO_LARGE,
        ItemErrorCode.TOO_MANY_PIXELS,
        ItemErrorCode.NOT_AN_IMAGE,
        ItemErrorCode.DECODE_FAILED,
        ItemErrorCode.ACCESS_DENIED,
    }
)
"""Item errors that are the image's: 422. The others (storage, inference) are 500."""

_IMAGE_TYPES = ("image/", "application/octet-stream")

# Inline: FastAPI lists only the models its routes declare among the components.
_DETECT_IMAGE_SCHEMA = {
    key: value
    for key, value in DetectImage.model_json_schema(
        ref_template="#/components/schemas/{model}"
    ).items()
    if key != "$defs"
}

_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
            "encoding": {"file": {"contentType": "image/*"}},
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {
            "schema": _DETECT_IMAGE_SCHEMA,
            "example": {"image": {"bucket": "line-3", "key": "cam1/0001.jpg"}},
        },
    },
    "description": "The image: a multipart `file` (form fields may carry the query's "
    "options), its raw bytes with an image content type, or JSON naming an object in a "
    "bucket the key may read.",
}

_EXAMPLE_ITEM = {
    "job_id": "0f6c2b1e9d8a4c7b8e5f4a3b2c1d0e9f",
    "item": {
        "task": "detect",
        "index": 0,
        "bucket": "yoloq-uploads",
        "key": "uploads/line-3/5b0e....jpg",
        "status": "ok",
        "model": "parts",
        "version": 7,
        "sha256": "ef3947a1488a...",
        "width": 1280,
        "height": 720,
        "detections": [
            {
                "class_id": 2,
                "class_name": "scratch",
                "confidence": 0.91,
                "box": [412.0, 188.5, 530.2, 260.0],
            }
        ],
        "timings": {"download_s": 0.002, "decode_s": 0.004, "inference_s": 0.031},
    },
}


@dataclass(frozen=True)
class DetectBody:
    image: bytes | ImageRef
    """The bytes sent, or the object named."""
    options: DetectOptions
    """The query's, with a form's fields added."""
    filename: str | None = None
    content_type: str | None = None


def _invalid(error: ValidationError) -> RequestValidationError:
    # Without the input: a body that is not even text must still render as JSON.
    return RequestValidationError(
        error.errors(include_url=False, include_input=False, include_context=False)
    )


async def _read_body(request: Request, options: DetectOptions) -> DetectBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=32) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, "the form needs the image as 'file'"
                )
            fields: dict[str, Any] = {}
            for name in form:
                if name != "file":
                    values = form.getlist(name)
                    fields[name] = values if name == "classes" else values[-1]
            data = await upload.read()
            filename, upload_type = upload.filename, upload.content_type
        if fields:
            try:
                options = DetectOptions.model_validate(
                    {**fields, **options.model_dump(exclude_unset=True)}
                )
            except ValidationError as error:
                raise _invalid(error) from error
        return DetectBody(data, options, filename, upload_type)
    if content_type == "application/json":
        try:
            body = DetectImage.model_validate_json(await request.body())
        except ValidationError as error:
            raise _invalid(error) from error
        return DetectBody(body.image, options)
    if content_type.startswith(_IMAGE_TYPES):
        return DetectBody(await request.body(), options, content_type=content_type)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        f"send the image as multipart 'file', as raw bytes with an image/* content type, "
        f"or as JSON naming it in a bucket; not {content_type or 'no content type'}",
    )


def _queue(services: Services, principal: Principal, body: DetectBody) -> tuple[str, JSONResponse]:
    """Pin, admit, store and queue the one-image job: its id, and the 202 to give if the
    wait runs out. Refusals come before the upload, so a 429 costs nothing."""
    job_id, image, options = uuid.uuid4().hex, body.image, body.options
    pin = pin_model(options.model, job_id, services.settings, services.registry, principal)
    if isinstance(image, ImageRef):
        check_access([image], principal, services)
    check_backpressure(services, pin.id, 1)
    inline = None
    if isinstance(image, ImageRef):
        ref = image
    elif len(image) <= services.settings.detect_inline_max_bytes:
        check_upload(services, image)
        suffix = upload_suffix(body.filename, body.content_type)
        ref = ImageRef(
            bucket=services.settings.uploads_bucket,
            key=keys.inline_image_key(principal.tenant, job_id, suffix),
        )
        inline = image
    else:
        ref = store_upload(services, principal, image, body.filename, body.content_type)
    accepted = enqueue(
        services, principal, job_id, pin, [ref], options.params(), PRIORITY, inline_image=inline
    )
    pending = JSONResponse(
        accepted.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/v1/jobs/{job_id}"},
    )
    return job_id, pending


def _recorded(event: JobEvent) -> bool:
    return event.done >= event.total or event.status.is_final


def _answer(job_id: str, item: ResultItem) -> JSONResponse:
    result = DetectResult(job_id=job_id, item=item).model_dump(mode="json", exclude_none=True)
    headers = {"Location": f"/v1/jobs/{job_id}"}
    if item.status == "ok" or item.error is None:
        return JSONResponse(result, headers=headers)
    code = (
        status.HTTP_422_UNPROCESSABLE_CONTENT
        if item.error.code in CALLERS_FAULT
        else status.HTTP_500_INTERNAL_SERVER_ERROR
    )
    return JSONResponse({"detail": item.error.message, **result}, code, headers=headers)


@router.post(
    "",
    response_model=DetectResult,
    openapi_extra={"requestBody": _BODY},
    responses={
        200: {
            "description": "The image's result item, the same as a job's, timings included.",
            "content": {"application/json": {"example": _EXAMPLE_ITEM}},
        },
        202: {
            "description": "The timeout passed first: the job's id, to poll "
            "(GET /v1/jobs/{id}, its events or its results).",
            "model": None,
        },
        401: {"description": "No API key, or an unknown one."},
        403: {"description": "The image or the model is outside what the API key may use."},
        409: {"description": "The job was cancelled before its image was done."},
        413: {"description": "The image is larger than YOLOQ_MAX_UPLOAD_BYTES."},
        415: {"description": "The body is neither a form, an image nor JSON."},
        422: {
            "description": "Bad options, an unknown model, an empty body, or an image the "
            "worker could not read (`detail` says why; the item and job id come with it)."
        },
        429: {"description": "The model's queue is full; see Retry-After."},
        500: {"description": "The worker failed on the image (the item says how)."},
        503: {"description": "Redis, the broker or object storage is unreachable."},
    },
)
async def detect(
    request: Request,
    services: ServicesDep,
    principal: CurrentPrincipal,
    options: Annotated[DetectOptions, Query()],
) -> Any:
    """Detect on one image and answer with its result.

    The image becomes a one-image job at high priority, batched with everything else its
    model's workers run, recorded exactly once and readable afterwards as
    ``/v1/jobs/{job_id}``. Bytes up to YOLOQ_DETECT_INLINE_MAX_BYTES travel to the worker
    in Redis (the item's key names no object then); larger ones are stored under your
    prefix of the uploads bucket. Either way a worker that dies mid-image costs a
    redelivery, not the image.
    """
    body = await _read_body(request, options)
    job_id, pending = await run_in_threadpool(_queue, services, principal, body)
    settings = services.settings
    timeout = min(body.options.timeout or settings.detect_timeout_s, settings.max_wait_s)
    if await wait_for(services, job_id, _recorded, timeout) is None:
        return pending
    [item] = await run_in_threadpool(services.jobs.items, job_id, 0, 1)
    if item is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} was cancelled before its image was done"
        )
    return _answer(job_id, item)
