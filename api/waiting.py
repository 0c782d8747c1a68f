"""Waiting on a job without holding a thread: its events, as ``api.events`` delivers them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.events import follow
from yoloq.schemas import JobEvent


async def read_job_event(services: Services, job_id: str) -> JobEvent | None:
    record = await run_in_threadpool(services.jobs.get, job_id)
    return JobEvent.of(record.public) if record else None


def job_events(services: Services, job_id: str) -> AsyncGenerator[JobEvent | None]:
    """The job's state now and each change, None for each quiet heartbeat."""
    return follow(
        services.events,
        job_id,
        lambda: read_job_event(services, job_id),
        services.settings.events_heartbeat_s,
    )


async def wait_for(
    services: Services, job_id: str, until: Callable[[JobEvent], bool], timeout_s: float
) -> JobEvent | None:
    """The job's first state that meets ``until``; None after ``timeout_s``, or if Redis
    forgets the job first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            async with contextlib.aclosing(job_events(services, job_id)) as events:
                async for event in events:
                    if event is not None and until(event):
                        return event
    return None
