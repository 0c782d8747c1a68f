"""Upload an image into the uploads bucket, for clients without S3 access of their own."""

from __future__ import annotations

import mimetypes
import re
import uuid
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException, UploadFile, status

from api.auth import CurrentPrincipal, Principal
from api.deps import Services, ServicesDep
from yoloq import keys
from yoloq.schemas import ImageRef, UploadedImage

router = APIRouter(prefix="/v1/images", tags=["images"])

_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


def upload_suffix(filename: str | None, content_type: str | None) -> str:
    suffix = PurePosixPath(filename or "").suffix.lower()
    if not _SAFE_SUFFIX.fullmatch(suffix):
        suffix = mimetypes.guess_extension(content_type or "") or ""
    return suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""


def check_upload(services: Services, data: bytes) -> None:
    """413 over the upload limit, 422 if empty."""
    limit = services.settings.max_upload_bytes
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the file is larger than {limit} bytes"
        )
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the file is empty")


def store_upload(
    services: Services,
    principal: Principal,
    data: bytes,
    filename: str | None,
    content_type: str | None,
) -> ImageRef:
    """Put an image's bytes under the tenant's prefix of the uploads bucket: 413 over the
    upload limit, 422 if empty."""
    check_upload(services, data)
    bucket = services.settings.uploads_bucket
    key = keys.upload_key(principal.tenant, uuid.uuid4().hex, upload_suffix(filename, content_type))
    services.store.put(bucket, key, data, content_type or "application/octet-stream")
    return ImageRef(bucket=bucket, key=key)


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
    data = file.file.read(services.settings.max_upload_bytes + 1)
    ref = store_upload(services, principal, data, file.filename, file.content_type)
    return UploadedImage(bucket=ref.bucket, key=ref.key)
