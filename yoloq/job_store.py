"""Job state, per-item results and worker heartbeats in Redis.

Redis is the fast path: everything here expires after the result TTL, and S3 (see
``yoloq.archive``) keeps the durable record. Counters change only inside Lua scripts so
a chunk delivered twice is counted once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast

import redis

from yoloq import keys, redis_connection
from yoloq.archive import PartRef
from yoloq.results import ResultItem, parse_item
from yoloq.schemas import (
    ChunkTask,
    DeadLetter,
    InferenceParams,
    JobPublic,
    JobStatus,
    Manifest,
    ModelPin,
    ObjectLocation,
    PlanSpec,
    Priority,
    WorkerHeartbeat,
)


def _lua(name: str) -> str:
    return resources.files("yoloq").joinpath("lua", f"{name}.lua").read_text()


def _lua_publishing(name: str) -> str:
    """A script that changes a job and says so on the job-events channel."""
    return _lua("publish_event") + _lua(name)


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=UTC) if value else None


@dataclass(frozen=True)
class JobRecord:
    """What Redis holds about a job: its public view plus what workers need."""

    public: JobPublic
    tenant: str
    callback_url: str | None
    model: str
    params: InferenceParams
    chunks: int
    chunk_size: int
    page_images: int
    priority: Priority
    only_task: ChunkTask | None
    """A job of one chunk keeps its task; other jobs keep their images in input pages."""
    segment_chunks: int = 0
    """Chunks joined into each segment ahead of the end (0: none)."""
    segments: dict[int, int] = field(default_factory=dict)
    """Segment -> its size in bytes, for those written."""

    @classmethod
    def of(cls, job_id: str, fields: Mapping[Any, Any]) -> JobRecord:
        """From the job hash's fields, as read (strings) or as written."""
        text = {str(name): str(value) for name, value in fields.items()}
        public = JobPublic(
            id=job_id,
            status=JobStatus(text["status"]),
            total=int(text["total"]),
            done=int(text["done"]),
            failed=int(text["failed"]),
            created_at=datetime.fromtimestamp(float(text["created_at"]), tz=UTC),
            started_at=_timestamp(text.get("started_at")),
            finished_at=_timestamp(text.get("finished_at")),
            results=ObjectLocation(bucket=text["results_bucket"], key=text["results_key"]),
            model=ModelPin.model_validate_json(text["pin"]) if text.get("pin") else None,
            planned_at=_timestamp(text.get("planned_at")),
            truncated=text.get("truncated") == "1",
        )
        return cls(
            public=public,
            tenant=text["tenant"],
            callback_url=text.get("callback_url") or None,
            model=text["model"],
            params=InferenceParams.model_validate_json(text["params"]),
            chunks=int(text["chunks"]),
            chunk_size=int(text.get("chunk_size") or 0),
            page_images=int(text.get("page_images") or 0),
            priority=cast(Priority, text.get("priority") or "normal"),
            only_task=(
                ChunkTask.model_validate_json(text["only_task"]) if text.get("only_task") else None
            ),
            segment_chunks=int(text.get("segment_chunks") or 0),
            segments={
                int(name.removeprefix("segment:")): int(value)
                for name, value in text.items()
                if name.startswith("segment:")
            },
        )

    def manifest(self) -> Manifest:
        """The durable record written to S3 when the job ends."""
        return Manifest(
            job=self.public,
            tenant=self.tenant,
            model=self.model,
            params=self.params,
            chunks=self.chunks,
        )


@dataclass(frozen=True)
class PlanState:
    record: JobRecord
    spec: PlanSpec
    pages: int
    """Input pages listed and counted so far."""
    cursor: str
    """Where listing goes on: the last key listed, or a manifest's byte offset and line."""
    chunks_sent: int
    planner_beat: float
    """When a planner last made progress (unix seconds)."""


@dataclass(frozen=True)
class ChunkCompletion:
    newly_counted: bool
    chunks_done: int
    chunks_total: int
    """0 while the job is still being planned: it cannot be complete yet."""
    part_counted: PartRef | None = None
    """The part that holds the chunk's results."""
    completed_segment: int = -1
    """The segment of chunks this count completed (this delivery joins it), or -1."""
    cancelled: bool = False

    @property
    def job_complete(self) -> bool:
        return not self.cancelled and 0 < self.chunks_total <= self.chunks_done


@dataclass(frozen=True)
class ChunkStart:
    verdict: str
    """``run``, or why not: ``gone``, ``cancelled``, ``ended`` or ``counted``."""
    deliveries: int
    """Deliveries of the chunk started so far, this one included (for ``run``)."""


def _inflight_field(task: ChunkTask) -> str:
    return keys.chunk_id(task.job_id, task.chunk)


class JobGone(Exception):
    """The job's state is no longer in Redis (expired, or never created)."""


class NotReplicated(Exception):
    def __init__(self, job_id: str, acked: int, wanted: int) -> None:
        super().__init__(f"job {job_id} reached {acked} of the {wanted} replica(s) required")


class JobStore:
    def __init__(self, client: redis.Redis[str], raw: redis.Redis[bytes], prefix: str) -> None:
        """``raw``: the same server through a client that keeps bytes (image data)."""
        self.redis = client
        self.keys = keys.RedisKeys(prefix)
        self._complete_chunk = client.register_script(_lua_publishing("complete_chunk"))
        self._finish_job = client.register_script(_lua_publishing("finish_job"))
        self._cancel_job = client.register_script(_lua_publishing("cancel_job"))
        self._start_chunk = client.register_script(_lua_publishing("start_chunk"))
        self._plan_page = client.register_script(_lua_publishing("plan_page"))
        self._finish_planning = client.register_script(_lua_publishing("finish_planning"))
        self._claim_inflight = client.register_script(_lua("claim_inflight"))
        self.raw = raw

    @classmethod
    def from_url(
        cls, url: str, prefix: str, connect_timeout_s: float = 5, timeout_s: float = 30
    ) -> JobStore:
        """One Redis, or the master of a Sentinel set (``redis+sentinel://``)."""
        timeouts = {"socket_connect_timeout": connect_timeout_s, "socket_timeout": timeout_s}
        return cls(
            redis_connection.connect(url, **timeouts),
            redis_connection.connect_bytes(url, **timeouts),
            prefix,
        )

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()
        self.raw.close()

    # Jobs

    def create(
        self,
        job_id: str,
        *,
        tenant: str,
        total: int,
        callback_url: str | None = None,
        chunks: int,
        chunk_size: int,
        model: str,
        params: InferenceParams,
        priority: Priority = "normal",
        segment_chunks: int = 0,
        results: ObjectLocation,
        ttl_s: int,
        only_task: ChunkTask | None = None,
        page_images: int = 0,
        plan: PlanSpec | None = None,
        pin: ModelPin | None = None,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> JobRecord:
        """Record a new job. With ``replicas``, only once that many replicas have it:
        a failover to one of them cannot forget a job the API answered 202 for
        (``NotReplicated`` otherwise, with the job written on the master only).

        What lets a lost chunk be sent again: a job of one chunk keeps its task here
        (``only_task``); any other job's images are in input pages in S3 of
        ``page_images`` each. A job with a ``plan`` starts ``planning``, with nothing
        counted: the planner adds its pages as it lists them."""
        now = time.time()
        key = self.keys.job(job_id)
        fields: dict[str | bytes, bytes | float | int | str] = {
            "id": job_id,
            "status": (JobStatus.PLANNING if plan else JobStatus.QUEUED).value,
            "total": total,
            "done": 0,
            "failed": 0,
            "chunks": chunks,
            "chunk_size": chunk_size,
            "page_images": page_images,
            "segment_chunks": segment_chunks,
            "priority": priority,
            "created_at": repr(now),
            "tenant": tenant,
            "callback_url": callback_url or "",
            "model": model,
            "pin": pin.model_dump_json() if pin else "",
            "params": params.model_dump_json(),
            "results_bucket": results.bucket,
            "results_key": results.key,
            "only_task": only_task.model_dump_json() if only_task else "",
        }
        if plan:
            fields |= {
                "plan": plan.model_dump_json(),
                "pages": 0,
                "cursor": "",
                "planner_beat": now,
            }
        # MULTI/EXEC by hand, so that WAIT follows on the same connection: WAIT counts the
        # replicas that have this connection's writes, and inside MULTI it would not wait.
        pipe = self.redis.pipeline(transaction=False)
        command: Callable[..., object] = pipe.execute_command  # untyped in redis' stubs
        command("MULTI")
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl_s)
        pipe.incrby(self.keys.queued_images(model), total)
        pipe.zadd(self.keys.active_jobs(), {job_id: now})
        command("EXEC")
        if replicas:
            command("WAIT", replicas, replica_timeout_ms)
        replies = pipe.execute()
        written = replies[-2] if replicas else replies[-1]
        failed = [reply for reply in written if isinstance(reply, Exception)]
        if failed:
            raise failed[0]
        if replicas and int(replies[-1]) < replicas:
            raise NotReplicated(job_id, int(replies[-1]), replicas)
        return JobRecord.of(job_id, fields)

    def put_image(self, job_id: str, data: bytes, ttl_s: int) -> None:
        """Hold a one-image job's bytes for its worker (``ChunkTask.inline_image``)."""
        self.raw.set(self.keys.job_image(job_id), data, ex=ttl_s)

    def image(self, job_id: str) -> bytes | None:
        return self.raw.get(self.keys.job_image(job_id))

    def forget_image(self, job_id: str) -> None:
        self.redis.delete(self.keys.job_image(job_id))

    def get(self, job_id: str) -> JobRecord | None:
        fields = self.redis.hgetall(self.keys.job(job_id))
        return JobRecord.of(job_id, fields) if fields else None

    def plan_state(self, job_id: str) -> PlanState | None:
        """Where the planner of a prefix or manifest job is; None unless the job is
        still planning."""
        fields = self.redis.hgetall(self.keys.job(job_id))
        if fields.get("status") != JobStatus.PLANNING.value:
            return None
        return PlanState(
            record=JobRecord.of(job_id, fields),
            spec=PlanSpec.model_validate_json(fields["plan"]),
            pages=int(fields["pages"]),
            cursor=fields["cursor"],
            chunks_sent=int(fields.get("chunks_sent") or 0),
            planner_beat=float(fields["planner_beat"]),
        )

    def plan_page(
        self, job_id: str, model: str, page: int, images: int, chunks: int, cursor: str
    ) -> str:
        """Count a page the planner listed: ``planned``, ``stale`` (counted already), or
        the status of a job no longer planning."""
        result = self._plan_page(
            keys=[self.keys.job(job_id), self.keys.queued_images(model), self.keys.job_events()],
            args=[page, images, chunks, cursor, repr(time.time())],
        )
        if not result:
            raise JobGone(f"job {job_id} is not in Redis (expired or never created)")
        return str(result)

    def chunks_sent(self, job_id: str, chunks: int) -> None:
        """The planner has sent the job's chunks up to ``chunks``."""
        self.redis.hset(
            self.keys.job(job_id), mapping={"chunks_sent": chunks, "planner_beat": time.time()}
        )

    def finish_planning(self, job_id: str, truncated: bool) -> tuple[JobStatus, bool]:
        """Every image is listed: the status that stands, and whether every chunk was
        counted already."""
        status, complete = self._finish_planning(
            keys=[self.keys.job(job_id), self.keys.job_chunks_done(job_id), self.keys.job_events()],
            args=[repr(time.time()), "1" if truncated else "0"],
        )
        if not status:
            raise JobGone(f"job {job_id} is not in Redis (expired or never created)")
        return JobStatus(status), bool(complete)

    def take_planner_lock(self, job_id: str, holder: str, hold_s: float) -> bool:
        """One planner per job; the holder renews it while it lists."""
        key = self.keys.job_planner(job_id)
        if self.redis.set(key, holder, nx=True, px=int(hold_s * 1000)):
            return True
        if self.redis.get(key) == holder:
            self.redis.pexpire(key, int(hold_s * 1000))
            return True
        return False

    def release_planner_lock(self, job_id: str, holder: str) -> None:
        key = self.keys.job_planner(job_id)
        if self.redis.get(key) == holder:
            self.redis.delete(key)

    def queued_images_for(self, model: str) -> int:
        return max(0, int(self.redis.get(self.keys.queued_images(model)) or 0))

    def claim_idempotency_key(
        self, tenant: str, key: str, job_id: str, body_digest: str, ttl_s: int
    ) -> tuple[str, str] | None:
        """Claim ``key`` for a new job; None if claimed, else the (job id, body digest)
        that claimed it first."""
        name = self.keys.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest())
        if self.redis.set(name, f"{job_id}:{body_digest}", nx=True, ex=ttl_s):
            return None
        existing = self.redis.get(name) or ":"
        first_job, _, first_digest = existing.partition(":")
        return first_job, first_digest

    def release_idempotency_key(self, tenant: str, key: str) -> None:
        self.redis.delete(self.keys.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest()))

    def queued_images(self) -> dict[str, int]:
        """Images waiting per model."""
        counts = {}
        prefix = self.keys.queued_images("")
        for key in self.redis.scan_iter(match=f"{prefix}*", count=100):
            value = self.redis.get(key)
            counts[key.removeprefix(prefix)] = max(0, int(value or 0))
        return counts

    def withdraw(self, job_id: str, model: str, total: int) -> None:
        """Undo ``create`` for a job whose chunks could not all be queued."""
        self.delete(job_id)
        self.redis.decrby(self.keys.queued_images(model), total)

    def delete(self, job_id: str) -> None:
        self.redis.delete(
            self.keys.job(job_id),
            self.keys.job_items(job_id),
            self.keys.job_chunks_done(job_id),
            self.keys.job_deliveries(job_id),
            self.keys.job_planner(job_id),
            self.keys.job_image(job_id),
        )
        self.redis.zrem(self.keys.active_jobs(), job_id)

    def start_chunk(self, task: ChunkTask, worker: str) -> ChunkStart:
        """A delivery of ``task`` begins on ``worker``: whether to run it, and if so how
        many deliveries of it have started. A chunk to run is listed in the worker's
        in-flight hash and its job marked running."""
        verdict, deliveries = self._start_chunk(
            keys=[
                self.keys.job(task.job_id),
                self.keys.job_chunks_done(task.job_id),
                self.keys.job_deliveries(task.job_id),
                self.keys.inflight(worker),
                self.keys.job_events(),
            ],
            args=[task.chunk, repr(time.time()), _inflight_field(task), task.model_dump_json()],
        )
        return ChunkStart(verdict, int(deliveries))

    def complete_chunk(
        self,
        task: ChunkTask,
        part: PartRef,
        items: list[ResultItem],
        keep_items: bool = False,
    ) -> ChunkCompletion:
        """Count a chunk's items as held by ``part``, unless the chunk was counted already.
        ``keep_items``: store them in Redis too (a job of one chunk, whose answer is read
        at once and which has no part)."""
        failed = sum(1 for item in items if item.status == "error")
        args: list[str | int] = [task.chunk, part.encode(), len(items), failed]
        if keep_items:
            for item in items:
                args += [item.index, item.model_dump_json()]
        newly, chunks_done, chunks_total, counted, segment = self._complete_chunk(
            keys=[
                self.keys.job(task.job_id),
                self.keys.job_chunks_done(task.job_id),
                self.keys.job_items(task.job_id),
                self.keys.queued_images(task.model),
                self.keys.job_events(),
            ],
            args=args,
        )
        if newly == -1:
            raise JobGone(f"job {task.job_id} is not in Redis (expired or never created)")
        if newly in (-2, -3):  # cancelled, or ended: nothing more is recorded
            return ChunkCompletion(False, 0, 0, cancelled=True)
        part_counted = PartRef.decode(counted) if counted else None
        return ChunkCompletion(
            bool(newly), int(chunks_done), int(chunks_total), part_counted, int(segment)
        )

    def segment_written(self, job_id: str, segment: int, size: int) -> None:
        self.redis.hset(self.keys.job(job_id), f"segment:{segment}", size)

    def forget_chunks(self, job_id: str) -> None:
        """Drop a finalised job's chunk markers and delivery counts (``parts.json`` names
        its parts now): what Redis keeps of an ended job does not grow with it."""
        self.redis.delete(self.keys.job_chunks_done(job_id), self.keys.job_deliveries(job_id))

    def claim_webhook(self, job_id: str) -> bool:
        """True for the one caller that should send the job's webhook."""
        return bool(self.redis.hsetnx(self.keys.job(job_id), "webhook_claimed", "1"))

    def cancel(self, job_id: str, model: str) -> JobStatus:
        """Cancel unless the job has ended; returns the status that stands."""
        result = self._cancel_job(
            keys=[self.keys.job(job_id), self.keys.queued_images(model), self.keys.job_events()],
            args=[repr(time.time())],
        )
        if not result:
            raise JobGone(f"job {job_id} is not in Redis (expired or never created)")
        self.forget_image(job_id)  # its chunk is skipped: nobody will read it
        return JobStatus(result)

    def is_cancelled(self, job_id: str) -> bool:
        return self.redis.hget(self.keys.job(job_id), "status") == JobStatus.CANCELLED.value

    def finish(self, job_id: str, status: JobStatus) -> JobStatus:
        """Set the final status unless one is set already; returns the status that stands."""
        result = self._finish_job(
            keys=[self.keys.job(job_id), self.keys.job_events()],
            args=[status.value, repr(time.time())],
        )
        if not result:
            raise JobGone(f"job {job_id} is not in Redis (expired or never created)")
        return JobStatus(result)

    def items(self, job_id: str, offset: int, limit: int) -> list[ResultItem | None]:
        """Items ``offset`` .. ``offset + limit - 1`` of a job of one chunk (the only jobs
        whose items Redis holds); None where an item is not done yet."""
        if limit <= 0:
            return []
        indexes = [str(index) for index in range(offset, offset + limit)]
        raw = self.redis.hmget(self.keys.job_items(job_id), indexes)
        return [parse_item(value) if value else None for value in raw]

    # Lost chunks

    def active_jobs(self, created_before: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.keys.active_jobs(), "-inf", created_before))

    def forget_active(self, job_id: str) -> None:
        self.redis.zrem(self.keys.active_jobs(), job_id)

    def counted_chunks(self, job_id: str) -> set[int]:
        return {int(chunk) for chunk in self.redis.hkeys(self.keys.job_chunks_done(job_id))}

    def counted_parts(self, job_id: str, chunks: list[int] | None = None) -> dict[int, PartRef]:
        """Chunk -> the part that holds it, for ``chunks`` (every counted one if None);
        chunks not counted yet are left out."""
        key = self.keys.job_chunks_done(job_id)
        if chunks is None:
            return {int(c): PartRef.decode(p) for c, p in self.redis.hgetall(key).items()}
        found = self.redis.hmget(key, [str(chunk) for chunk in chunks])
        return {c: PartRef.decode(p) for c, p in zip(chunks, found, strict=True) if p is not None}

    def take_sweep_lock(self, hold_s: float, after: str = "") -> bool:
        """At most one sweep per ``hold_s`` of each kind: periodic, or ``after`` a
        reconnect or a start (``workers.reconnect``)."""
        key = self.keys.sweep_lock(after)
        return bool(self.redis.set(key, "1", nx=True, px=int(hold_s * 1000)))

    # Dead letters

    def add_dead_letter(self, letter: DeadLetter, keep: int = 10_000) -> None:
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.dead_letters(), letter.model_dump_json())
        pipe.ltrim(self.keys.dead_letters(), 0, keep - 1)
        pipe.execute()

    def dead_letters(self, offset: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        raw = self.redis.lrange(self.keys.dead_letters(), offset, offset + limit - 1)
        return [DeadLetter.model_validate_json(value) for value in raw]

    def dead_letter_count(self) -> int:
        return int(self.redis.llen(self.keys.dead_letters()))

    # Chunks in flight

    def track_inflight(self, worker: str, task: ChunkTask) -> None:
        self.redis.hset(self.keys.inflight(worker), _inflight_field(task), task.model_dump_json())

    def untrack_inflight(self, worker: str, task: ChunkTask) -> None:
        self.redis.hdel(self.keys.inflight(worker), _inflight_field(task))

    def clear_inflight(self, worker: str) -> None:
        self.redis.delete(self.keys.inflight(worker))

    def all_inflight(self) -> set[str]:
        """``job_id:chunk`` of every chunk any known worker holds."""
        held: set[str] = set()
        for worker in self.redis.zrange(self.keys.workers(), 0, -1):
            held.update(self.redis.hkeys(self.keys.inflight(worker)))
        return held

    def inflight(self, worker: str) -> list[ChunkTask]:
        raw = self.redis.hvals(self.keys.inflight(worker))
        return [ChunkTask.model_validate_json(value) for value in raw]

    def silent_workers(self, max_age_s: float) -> list[str]:
        """Workers whose last heartbeat is older than ``max_age_s``: dead, or stopped
        without saying so. ``claim_inflight`` drops them from the list."""
        return list(self.redis.zrangebyscore(self.keys.workers(), "-inf", time.time() - max_age_s))

    def claim_inflight(self, worker: str, even_if_alive: bool = False) -> list[ChunkTask]:
        """Take a dead worker's in-flight chunks (none while its heartbeat lives, unless
        ``even_if_alive``); exactly one caller gets each."""
        raw = self._claim_inflight(
            keys=[self.keys.worker(worker), self.keys.inflight(worker), self.keys.workers()],
            args=[worker, "1" if even_if_alive else "0"],
        )
        return [ChunkTask.model_validate_json(value) for value in raw]

    # Workers

    def heartbeat(self, beat: WorkerHeartbeat, ttl_s: float) -> None:
        key = self.keys.worker(beat.name)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"json": beat.model_dump_json()})
        pipe.expire(key, max(1, int(ttl_s)))
        pipe.zadd(self.keys.workers(), {beat.name: beat.last_seen.timestamp()})
        pipe.execute()

    def forget_worker(self, name: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.worker(name))
        pipe.zrem(self.keys.workers(), name)
        pipe.execute()

    def live_workers(self, max_age_s: float) -> list[WorkerHeartbeat]:
        """Workers whose last heartbeat is at most ``max_age_s`` old."""
        names = self.redis.zrangebyscore(self.keys.workers(), time.time() - max_age_s, "+inf")
        beats = []
        for name in names:
            raw = self.redis.hget(self.keys.worker(name), "json")
            if raw:
                beats.append(WorkerHeartbeat.model_validate_json(str(raw)))
        return beats
