"""Upload an image into the uploads bucket, for clients without S3 access of their own."""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException, UploadFile, status

from api.auth import CurrentPrincipal
from api.deps import ServicesDep
from yoloq import keys
from yoloq.schemas import UploadedImage

router = APIRouter(prefix="/v1/images", tags=["images"])

_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


def _suffix(filename: str | None) -> str:
    suffix = PurePosixPath(filename or "").suffix.lower()
    return suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {"description": "The file is larger than the upload limit."},
        422: {"description": "The file is empty."},
    },
)
def upload_image(
    file: UploadFile, services: ServicesDep, principal: CurrentPrincipal
) -> UploadedImage:
    limit = services.settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the file is larger than {limit} bytes"
        )
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the file is empty")
    bucket = services.settings.uploads_bucket
    key = keys.upload_key(principal.tenant, uuid.uuid4().hex, _suffix(file.filename))
    services.store.put(bucket, key, data, file.content_type or "application/octet-stream")
    return UploadedImage(bucket=bucket, key=key)
