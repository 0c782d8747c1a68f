"""A job's progress as server-sent events, pushed as workers record it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import CurrentPrincipal, Principal
from api.deps import Services, ServicesDep
from api.routes.jobs import find_job
from api.waiting import job_events
from yoloq.schemas import JobEvent

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EXAMPLE = (
    'event: progress\ndata: {"job":"8d2e4c1f0b9a4e6f8a7b6c5d4e3f2a1b","status":"running",'
    '"done":16,"failed":0,"total":32}\n\n'
    ": heartbeat\n\n"
    'event: end\ndata: {"job":"8d2e4c1f0b9a4e6f8a7b6c5d4e3f2a1b","status":"succeeded",'
    '"done":32,"failed":0,"total":32}\n\n'
)


def _sse(name: str, event: JobEvent) -> str:
    return f"event: {name}\ndata: {event.model_dump_json()}\n\n"


async def _stream(
    services: Services, principal: Principal, first: JobEvent, in_redis: bool
) -> AsyncIterator[str]:
    if not in_redis or first.status.is_final:
        yield _sse("end", first)
        return
    last = first
    async with contextlib.aclosing(job_events(services, first.job)) as events:
        async for event in events:
            if event is None:
                yield ": heartbeat\n\n"
                continue
            last = event
            yield _sse("end" if event.status.is_final else "progress", event)
    if not last.status.is_final:
        # Redis forgot the job while we followed it: what S3 kept is the last word.
        job, _ = await run_in_threadpool(find_job, first.job, services, principal)
        yield _sse("end" if job.status.is_final else "progress", JobEvent.of(job))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `progress` as chunks are recorded (and once "
            "at the start, with the state then), then one `end` with the final status, and "
            "the stream closes. A job that has ended gets its `end` at once. Comments "
            "(`: heartbeat`) keep an idle stream open through proxies. Each `data` is a "
            "JobEvent.",
            "content": {"text/event-stream": {"example": EXAMPLE}},
        },
        404: {"description": "No such job."},
    },
)
async def stream_job_events(
    job_id: str, services: ServicesDep, principal: CurrentPrincipal
) -> StreamingResponse:
    """Follow a job without polling: its state now, each change, and its end."""
    job, in_redis = await run_in_threadpool(find_job, job_id, services, principal)
    return StreamingResponse(
        _stream(services, principal, JobEvent.of(job), in_redis),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
