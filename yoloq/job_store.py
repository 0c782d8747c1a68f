"""Job state, per-item results and worker heartbeats in Redis.

Redis is the fast path: everything here expires after the result TTL, and S3 (see
``yoloq.archive``) keeps the durable record. Counters change only inside Lua scripts so
a chunk delivered twice is counted once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import redis

from yoloq import keys, redis_connection
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
class ChunkCompletion:
    newly_counted: bool
    chunks_done: int
    chunks_total: int
    cancelled: bool = False

    @property
    def job_complete(self) -> bool:
        return not self.cancelled and self.chunks_done >= self.chunks_total


@dataclass(frozen=True)
class ChunkStart:
    verdict: str
    """``run``, or why not: ``gone``, ``cancelled`` or ``counted``."""
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
        model: str,
        params: InferenceParams,
        results: ObjectLocation,
        ttl_s: int,
        tasks: list[ChunkTask] | None = None,
        pin: ModelPin | None = None,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> JobRecord:
        """Record a new job. With ``replicas``, only once that many replicas have it:
        a failover to one of them cannot forget a job the API answered 202 for
        (``NotReplicated`` otherwise, with the job written on the master only)."""
        now = time.time()
        key = self.keys.job(job_id)
        fields: dict[str | bytes, bytes | float | int | str] = {
            "id": job_id,
            "status": JobStatus.QUEUED.value,
            "total": total,
            "done": 0,
            "failed": 0,
            "chunks": chunks,
            "created_at": repr(now),
            "tenant": tenant,
            "callback_url": callback_url or "",
            "model": model,
            "pin": pin.model_dump_json() if pin else "",
            "params": params.model_dump_json(),
            "results_bucket": results.bucket,
            "results_key": results.key,
        }
        # MULTI/EXEC by hand, so that WAIT follows on the same connection: WAIT counts the
        # replicas that have this connection's writes, and inside MULTI it would not wait.
        pipe = self.redis.pipeline(transaction=False)
        command: Callable[..., object] = pipe.execute_command  # untyped in redis' stubs
        command("MULTI")
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl_s)
        pipe.incrby(self.keys.queued_images(model), total)
        if tasks:
            tasks_key = self.keys.job_tasks(job_id)
            pipe.hset(tasks_key, mapping={str(t.chunk): t.model_dump_json() for t in tasks})
            pipe.expire(tasks_key, ttl_s)
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
        record = self.get(job_id)
        assert record is not None
        return record

    def put_image(self, job_id: str, data: bytes, ttl_s: int) -> None:
        """Hold a one-image job's bytes for its worker (``ChunkTask.inline_image``)."""
        self.raw.set(self.keys.job_image(job_id), data, ex=ttl_s)

    def image(self, job_id: str) -> bytes | None:
        return self.raw.get(self.keys.job_image(job_id))

    def forget_image(self, job_id: str) -> None:
        self.redis.delete(self.keys.job_image(job_id))

    def get(self, job_id: str) -> JobRecord | None:
        fields = self.redis.hgetall(self.keys.job(job_id))
        if not fields:
            return None
        public = JobPublic(
            id=fields["id"],
            status=JobStatus(fields["status"]),
            total=int(fields["total"]),
            done=int(fields["done"]),
            failed=int(fields["failed"]),
            created_at=datetime.fromtimestamp(float(fields["created_at"]), tz=UTC),
            started_at=_timestamp(fields.get("started_at")),
            finished_at=_timestamp(fields.get("finished_at")),
            results=ObjectLocation(bucket=fields["results_bucket"], key=fields["results_key"]),
            model=ModelPin.model_validate_json(fields["pin"]) if fields.get("pin") else None,
        )
        return JobRecord(
            public=public,
            tenant=fields["tenant"],
            callback_url=fields.get("callback_url") or None,
            model=fields["model"],
            params=InferenceParams.model_validate_json(fields["params"]),
            chunks=int(fields["chunks"]),
        )

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
            self.keys.job_tasks(job_id),
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
        self, job_id: str, model: str, chunk: int, items: list[ResultItem]
    ) -> ChunkCompletion:
        """Store a chunk's items and count them, unless this chunk was counted already."""
        args: list[str | int] = [chunk, sum(1 for item in items if item.status == "error")]
        for item in items:
            args += [item.index, item.model_dump_json()]
        newly, chunks_done, chunks_total = self._complete_chunk(
            keys=[
                self.keys.job(job_id),
                self.keys.job_chunks_done(job_id),
                self.keys.job_items(job_id),
                self.keys.queued_images(model),
                self.keys.job_events(),
            ],
            args=args,
        )
        if newly == -1:
            raise JobGone(f"job {job_id} is not in Redis (expired or never created)")
        if newly == -2:
            return ChunkCompletion(False, 0, 0, cancelled=True)
        return ChunkCompletion(bool(newly), int(chunks_done), int(chunks_total))

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
        """Items ``offset`` .. ``offset + limit - 1``; None where an item is not done yet."""
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

    def chunk_tasks(self, job_id: str) -> dict[int, ChunkTask]:
        raw = self.redis.hgetall(self.keys.job_tasks(job_id))
        return {int(chunk): ChunkTask.model_validate_json(value) for chunk, value in raw.items()}

    def counted_chunks(self, job_id: str) -> set[int]:
        return {int(chunk) for chunk in self.redis.smembers(self.keys.job_chunks_done(job_id))}

    def take_sweep_lock(self, hold_s: float) -> bool:
        return bool(self.redis.set(self.keys.sweep_lock(), "1", nx=True, px=int(hold_s * 1000)))

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
