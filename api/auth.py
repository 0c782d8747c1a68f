"""API keys: who is calling, which tenant's jobs they see, which buckets they may read.

Keys are configured as SHA-256 hashes (``YOLOQ_API_KEYS`` / ``YOLOQ_API_KEYS_FILE``), so
neither the configuration nor a log holds one. A tenant sees only its own jobs: another
tenant's job id answers 404, as if it did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from api.deps import ServicesDep
from yoloq import keys
from yoloq.schemas import ImageRef

OPEN_TENANT = "default"
"""The one tenant every caller is when auth is disabled."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    buckets: frozenset[str]
    admin: bool
    models: frozenset[str] | None = None
    """The model names its jobs may run on; None: every model."""
    max_images_per_job: int | None = None
    """Its own limit; None: the deployment's (``YOLOQ_MAX_IMAGES_PER_JOB``)."""

    def may_use(self, model_name: str) -> bool:
        return self.models is None or model_name in self.models

    def may_read(self, ref: ImageRef, uploads_bucket: str) -> bool:
        """Its own buckets, and its own uploads in the shared uploads bucket."""
        if ref.bucket == uploads_bucket:
            return ref.key.startswith(keys.upload_prefix(self.tenant))
        return ref.bucket in self.buckets


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """A coroutine, as it does no I/O (see api/deps.py)."""
    ring = services.keyring
    if ring.disabled:
        return Principal(OPEN_TENANT, ring.open_buckets, admin=True)
    scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    tenant = ring.find(api_key.strip())
    if tenant is None:
        raise _unauthorized("invalid API key")
    models = frozenset(tenant.models) if tenant.models is not None else None
    return Principal(
        tenant.tenant, frozenset(tenant.buckets), tenant.admin, models, tenant.max_images_per_job
    )


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint needs an admin API key")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
