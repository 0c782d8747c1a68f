"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from api.deps import ServicesDep

router = APIRouter(tags=["health"])

HEARTBEAT_MAX_AGE_S = 30.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up. Checks nothing else, so a restart is never caused by a dependency."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; the body says why."}})
def readyz(services: ServicesDep) -> Any:
    """Redis and S3 reachable, and at least one worker with its model warmed."""
    reason, warm_workers = _readiness(services)
    if reason:
        return JSONResponse(
            {"status": "not ready", "reason": reason},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return {"status": "ready", "workers": warm_workers}


def _readiness(services: ServicesDep) -> tuple[str | None, int]:
    """Why the service is not ready (None if it is), and how many warm workers it has."""
    try:
        services.jobs.ping()
    except Exception as error:
        return f"redis unreachable: {error}", 0
    try:
        if not services.store.bucket_exists(services.settings.results_bucket):
            return f"results bucket {services.settings.results_bucket!r} does not exist", 0
    except Exception as error:
        return f"object storage unreachable: {error}", 0
    warm = sum(1 for w in services.jobs.live_workers(HEARTBEAT_MAX_AGE_S) if w.warmed)
    if not warm:
        return (
            f"no worker with a warmed model has sent a heartbeat in {HEARTBEAT_MAX_AGE_S:.0f}s",
            0,
        )
    return None, warm
