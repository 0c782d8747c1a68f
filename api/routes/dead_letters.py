"""Chunks set aside as poison: their worker died on every delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import AdminPrincipal
from api.deps import ServicesDep
from yoloq.schemas import DeadLetter

router = APIRouter(prefix="/v1/dead-letters", tags=["workers"])


@router.get("")
def list_dead_letters(
    services: ServicesDep,
    _admin: AdminPrincipal,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    """Newest first. Each holds the chunk's task (job, images, parameters) and how many
    deliveries it had; its images are ``poison`` errors in the job's results."""
    return services.jobs.dead_letters(offset, limit)
