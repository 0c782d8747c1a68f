"""Every Redis key, queue name, task name and S3 key yoloq uses, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jp2", ".avif"}
)
"""What a prefix job picks up (by name; the worker checks the content)."""

INFER_TASK = "yoloq.infer_chunk"
PLAN_TASK = "yoloq.plan_job"
WEBHOOK_TASK = "yoloq.deliver_webhook"
"""The Celery task name; the API sends by name and never imports the worker."""

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def chunk_id(job_id: str, chunk: int) -> str:
    """``job_id:chunk``: names a chunk in in-flight lists and in its Celery task's name."""
    return f"{job_id}:{chunk}"


def chunk_task_name(job_id: str, chunk: int) -> str:
    """The name Flower shows for a chunk's task (Celery's ``shadow``), without its images."""
    return f"{INFER_TASK}[{chunk_id(job_id, chunk)}]"


CHUNK_TASK_NAME = re.compile(re.escape(INFER_TASK) + r"\[([0-9a-f]{32}:\d+)\]")
"""Finds ``chunk_task_name`` in a raw message; its group is the ``chunk_id``."""


def queue_name(model_name: str) -> str:
    """One queue per model, so workers holding different models never take each other's work.
    This is the first of its normal-priority lists (see ``priority_queues``)."""
    return f"yoloq.infer.{model_name}"


PRIORITY_WEIGHTS = {"high": 4, "normal": 2, "low": 1}
"""Lists per priority. A worker takes from its non-empty lists in turn (kombu's round
robin), so while every priority has work, high gets 4/7 of the chunks, normal 2/7 and low
1/7: higher first, lower never starved. Alone in the queue, any priority gets them all."""


def priority_queue(model_name: str, priority: str, slot: int) -> str:
    if priority == "normal" and slot == 0:
        return queue_name(model_name)
    return f"{queue_name(model_name)}.{priority}.{slot}"


def priority_queues(model_name: str) -> list[str]:
    """Every list a worker of this model consumes, highest priority first."""
    return [
        priority_queue(model_name, priority, slot)
        for priority, weight in PRIORITY_WEIGHTS.items()
        for slot in range(weight)
    ]


def queue_for_chunk(model_name: str, priority: str, chunk: int) -> str:
    """Consecutive chunks of a job go to consecutive lists of its priority, so a job's
    chunks use all of its priority's share."""
    return priority_queue(model_name, priority, chunk % PRIORITY_WEIGHTS[priority])


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    def job(self, job_id: str) -> str:
        """Hash: the job's state and counters."""
        return f"{self.prefix}:job:{job_id}"

    def job_items(self, job_id: str) -> str:
        """Hash: item index -> result JSON, for a job of one chunk only (its answer is read
        at once); every other job's items live in its result parts in S3."""
        return f"{self.prefix}:job:{job_id}:items"

    def job_chunks_done(self, job_id: str) -> str:
        """Hash: chunk index -> the delivery that was counted, which names its result part;
        a redelivered chunk finds its index here and never counts twice."""
        return f"{self.prefix}:job:{job_id}:chunks"

    def job_deliveries(self, job_id: str) -> str:
        """Hash: chunk index -> deliveries started, to set aside a chunk that keeps killing
        its worker."""
        return f"{self.prefix}:job:{job_id}:deliveries"

    def job_planner(self, job_id: str) -> str:
        """String: held by the one planner listing the job's images."""
        return f"{self.prefix}:job:{job_id}:planner"

    def job_image(self, job_id: str) -> str:
        """String (bytes): the one image of a ``POST /v1/detect`` job sent to the worker
        through Redis instead of S3; deleted once its chunk is counted."""
        return f"{self.prefix}:job:{job_id}:image"

    def job_events(self) -> str:
        """Pub/sub channel: every job's status and counts, published by the Lua scripts
        as they change them (see schemas.JobEvent)."""
        return f"{self.prefix}:job-events"

    def active_jobs(self) -> str:
        """Sorted set: jobs not yet swept as finished, by creation time."""
        return f"{self.prefix}:active-jobs"

    def sweep_lock(self, after: str = "") -> str:
        """String: held by the one worker sweeping for lost chunks, periodically, or
        ``after`` a reconnect or a start."""
        return f"{self.prefix}:sweep-lock:{after}" if after else f"{self.prefix}:sweep-lock"

    def queued_images(self, model: str) -> str:
        """Integer: images submitted for a model and not yet done (what the queue holds)."""
        return f"{self.prefix}:queued-images:{model}"

    def idempotency(self, tenant: str, key_digest: str) -> str:
        """String: the job an Idempotency-Key created, and the digest of its body."""
        return f"{self.prefix}:idempotency:{tenant}:{key_digest}"

    def workers(self) -> str:
        """Sorted set: worker name scored by last heartbeat (unix seconds)."""
        return f"{self.prefix}:workers"

    def worker(self, name: str) -> str:
        """Hash: one worker's heartbeat."""
        return f"{self.prefix}:worker:{name}"

    def inflight(self, worker: str) -> str:
        """Hash: ``job_id:chunk`` -> the task of each chunk a worker is running, so the
        chunks of a worker that died are requeued at once, not after the visibility
        timeout."""
        return f"{self.prefix}:inflight:{worker}"

    def dead_letters(self) -> str:
        """List: chunks set aside as poison, newest first (see schemas.DeadLetter)."""
        return f"{self.prefix}:dead-letters"


# S3 layout in the results bucket. A part is named by its chunk and by the delivery that
# wrote it, so two deliveries running at once never overwrite each other: the one counted
# names the part that holds the chunk's results, and a part once counted never changes.
def result_part_key(job_id: str, chunk: int, delivery: int) -> str:
    return f"jobs/{job_id}/parts/{chunk:06d}-{delivery}.jsonl"


def result_segment_key(job_id: str, segment: int) -> str:
    """A run of consecutive counted parts joined ahead of the job's end."""
    return f"jobs/{job_id}/segments/{segment:06d}.jsonl"


def parts_index_key(job_id: str) -> str:
    """Which delivery's part holds each chunk, written when the job ends: pages of
    results are read from the parts after Redis has forgotten the job."""
    return f"jobs/{job_id}/parts.json"


def input_page_key(job_id: str, page: int) -> str:
    """A page of the job's images, as listed at submit or by the planner: what a lost
    chunk is rebuilt from."""
    return f"jobs/{job_id}/inputs/{page:06d}.jsonl"


def results_key(job_id: str) -> str:
    return f"jobs/{job_id}/results.jsonl"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


# The model registry's layout in the models bucket: a folder per model, a folder per
# version. A version exists once its model.json does; the claim and the digest index are
# how concurrent pushes agree on numbers (see yoloq.registry).
def model_prefix(name: str) -> str:
    return f"{name}/"


def model_version_key(name: str, version: int) -> str:
    return f"{name}/{version}/model.json"


def model_claim_key(name: str, version: int) -> str:
    return f"{name}/{version}/claim"


def model_file_key(name: str, version: int, filename: str) -> str:
    return f"{name}/{version}/{filename}"


def model_digest_key(name: str, sha256: str) -> str:
    """The version holding weights of this SHA-256: pushing the same bytes twice finds it."""
    return f"{name}/sha256/{sha256}"


def model_aliases_key(name: str) -> str:
    return f"{name}/aliases.json"


def upload_prefix(tenant: str) -> str:
    """Each tenant's uploads under its own prefix: one tenant cannot name another's files."""
    return f"uploads/{tenant}/"


def upload_key(tenant: str, upload_id: str, suffix: str) -> str:
    return f"{upload_prefix(tenant)}{upload_id}{suffix}"


def inline_image_key(tenant: str, job_id: str, suffix: str) -> str:
    """What the item of an image sent through Redis names: where it would have been
    uploaded. No object is there (see ``RedisKeys.job_image``)."""
    return f"{upload_prefix(tenant)}inline/{job_id}{suffix}"
