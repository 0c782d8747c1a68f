"""The workers serving this deployment, from their heartbeats."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import AdminPrincipal
from api.deps import ServicesDep
from api.routes.health import HEARTBEAT_MAX_AGE_S
from yoloq.schemas import WorkerHeartbeat

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get("")
def list_workers(services: ServicesDep, _admin: AdminPrincipal) -> list[WorkerHeartbeat]:
    """Every worker heard from in the last 30 seconds: device, model, warm, images done."""
    return sorted(services.jobs.live_workers(HEARTBEAT_MAX_AGE_S), key=lambda w: w.name)
