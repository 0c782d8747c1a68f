"""Job events for requests that wait: one Redis subscription per API process, fanned out.

The Lua scripts that change a job publish its state on one channel (``RedisKeys.job_events``).
Every waiting request (an event stream, a long poll, ``POST /v1/detect``) registers here
for its job and gets that job's events on a queue of its own; none of them reads Redis in
a loop. A subscription that breaks is made again, and every listener is then told to read
its job once (``RESYNC``), since pub/sub does not keep what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import redis.asyncio
from pydantic import ValidationError

from yoloq import redis_connection
from yoloq.schemas import JobEvent

log = logging.getLogger(__name__)

RESYNC = None
"""Put on listeners' queues when events may have been missed: read the job again."""

Listener = asyncio.Queue[JobEvent | None]


class JobEventHub:
    def __init__(self, redis_url: str, channel: str, connect_timeout_s: float = 5.0) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.connect_timeout_s = connect_timeout_s
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def listeners(self) -> int:
        return sum(len(queues) for queues in self._listeners.values())

    @contextlib.asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[Listener]:
        """A queue of the job's events from now on. Once this yields, the subscription is
        live: read the job's state after entering, and no later change is missed."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="job-events")
        queue: Listener = asyncio.Queue()
        self._listeners[job_id].add(queue)
        try:
            # If Redis is away the caller still reads the job itself and gets a RESYNC
            # once the subscription is back.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), self.connect_timeout_s)
            yield queue
        finally:
            self._listeners[job_id].discard(queue)
            if not self._listeners[job_id]:
                del self._listeners[job_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            client = redis_connection.connect_async(self.redis_url, socket_connect_timeout=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    self._tell_everyone(RESYNC)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._dispatch(message["data"])
            except (redis.RedisError, OSError) as error:
                log.warning("job events: subscription lost (%s); subscribing again", error)
            finally:
                self._subscribed.clear()
                await client.aclose()  # type: ignore[attr-defined]  # stubs predate it
            await asyncio.sleep(1.0)

    def _dispatch(self, data: str) -> None:
        try:
            event = JobEvent.model_validate_json(data)
        except ValidationError:
            log.warning("job events: ignored a message that is not a job event: %.200s", data)
            return
        for queue in self._listeners.get(event.job, ()):
            queue.put_nowait(event)

    def _tell_everyone(self, event: JobEvent | None) -> None:
        for queues in self._listeners.values():
            for queue in queues:
                queue.put_nowait(event)


ReadJob = Callable[[], Awaitable[JobEvent | None]]
"""The job's state read from Redis; None once Redis no longer holds it."""


def _is_news(event: JobEvent, last: JobEvent) -> bool:
    """Whether ``event`` moves the job on from ``last``: one published before ``last`` was
    read can still arrive after it, and must not move a progress bar back."""
    if last.status.is_final or event == last:
        return False
    return event.status.is_final or event.done > last.done or event.status != last.status


async def follow(
    hub: JobEventHub, job_id: str, read: ReadJob, heartbeat_s: float
) -> AsyncGenerator[JobEvent | None]:
    """The job's state now, then each change of it, ending with its final state (or when
    Redis forgets it). Yields None after ``heartbeat_s`` without news, and re-reads the
    job then, so a missed message costs at most one heartbeat."""
    async with hub.listen(job_id) as queue:
        last = await read()
        if last is None:
            return
        yield last
        while not last.status.is_final:
            quiet = False
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                event, quiet = RESYNC, True
            if event is RESYNC:
                event = await read()
                if event is None:
                    return
            if _is_news(event, last):
                last = event
                yield event
            elif quiet:
                yield None
