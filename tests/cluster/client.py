"""The client host's side of the cluster tests: ``python -m tests.cluster.client CMD``,
run inside the client's namespace, so every call crosses the test LAN to the hub.

Commands print one JSON document on stdout:
  prepare                the buckets
  submit JOBS IMAGES [IMGSZ]
                         upload the images and submit the jobs over HTTP -> {job: [keys]}
  holding WORKER         return once the worker holds chunks (polled every 20 ms)
  state JOB...           each job's status and counts, and each live worker's in-flight
                         chunks and images done
  ledger FILE            every job of ``submit``'s output (in FILE) finished, each image
                         exactly once in Redis and in results.jsonl, nothing left queued
  master                 the address of the Redis master the Sentinels name now
  soak-submit SECONDS FILE
                         submit jobs of 1-24 of 64 images over HTTP every 0.5-2.5 s for
                         SECONDS; each accepted job a JSON line in FILE -> {refused}
  soak-pending FILE      how many of FILE's jobs are not final yet
  soak-ledger FILE       FILE's jobs tallied: images, lost, duplicated, outcomes

Settings come from the environment the test gives it (YOLOQ_REDIS_URL, ...).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import redis

from tests import image_factory as make
from tests.jobs import Tally, check_ledger
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import wait_until
from yoloq.object_store import ObjectStore
from yoloq.redis_connection import SentinelTarget
from yoloq.schemas import ImageRef, InferenceParams
from yoloq.settings import Settings

INPUT_BUCKET = "images"


def stores() -> tuple[Settings, JobStore, ObjectStore]:
    settings = Settings()
    return (
        settings,
        JobStore.from_url(settings.redis_url, settings.key_prefix),
        ObjectStore(settings.s3_endpoint_url),
    )


def prepare() -> dict[str, object]:
    settings, _, objects = stores()
    for bucket in (INPUT_BUCKET, settings.results_bucket, settings.uploads_bucket):
        objects.ensure_bucket(bucket)
    return {"buckets": "ready"}


def submit(jobs: int, images: int, imgsz: int | None) -> dict[str, list[str]]:
    _, _, objects = stores()
    submitted: dict[str, list[str]] = {}
    with Client(os.environ["CLUSTER_API_URL"], os.environ["CLUSTER_API_KEY"]) as client:
        for _ in range(jobs):
            refs = []
            for i in range(images):
                key = f"cluster/{uuid.uuid4().hex}.jpg"
                objects.put(INPUT_BUCKET, key, make.jpeg(240 + 16 * (i % 6), 200, seed=i))
                refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
            accepted = client.submit(refs, InferenceParams(imgsz=imgsz))
            submitted[accepted.id] = [ref.key for ref in refs]
    return submitted


def state(job_ids: list[str]) -> dict[str, object]:
    _, job_store, _ = stores()
    jobs = {}
    for job_id in job_ids:
        record = job_store.get(job_id)
        assert record is not None, job_id
        jobs[job_id] = record.public.model_dump(mode="json", include={"status", "done", "total"})
    workers = {
        beat.name: {"inflight": len(job_store.inflight(beat.name)), "images": beat.images_done}
        for beat in job_store.live_workers(max_age_s=3 * Settings().heartbeat_interval_s)
    }
    return {"jobs": jobs, "workers": workers, "queued": job_store.queued_images()}


def holding(worker: str) -> dict[str, object]:
    _, job_store, _ = stores()
    wait_until(lambda: bool(job_store.inflight(worker)), 60, f"{worker} to hold chunks", 0.02)
    return {"inflight": len(job_store.inflight(worker))}


def ledger(path: Path) -> dict[str, object]:
    _, job_store, objects = stores()
    submitted: dict[str, list[str]] = json.loads(path.read_text())
    by_status: Counter[str] = Counter()
    for job_id, keys in submitted.items():
        images = [ImageRef(bucket=INPUT_BUCKET, key=key) for key in keys]
        by_status += check_ledger(job_store, objects, job_id, images)
    return {"items": dict(by_status), "queued": job_store.queued_images()}


def master() -> dict[str, object]:
    target = SentinelTarget.parse(Settings().redis_url)
    for host, port in target.sentinels:
        try:
            sentinel = redis.Redis(host=host, port=port, socket_timeout=2, decode_responses=True)
            ask = ("SENTINEL", "get-master-addr-by-name", target.master)
            address, _ = sentinel.execute_command(*ask)
        except (redis.RedisError, TypeError):
            continue  # that Sentinel is unreachable, or knows no master yet: ask the next
        return {"address": address}
    raise SystemExit("no Sentinel named a master")


def soak_submit(seconds: float, path: Path) -> dict[str, object]:
    _, _, objects = stores()
    pool = []
    for i in range(64):
        key = f"soak/{uuid.uuid4().hex}.jpg"
        objects.put(INPUT_BUCKET, key, make.jpeg(200 + 40 * (i % 8), 160 + 20 * (i % 8), seed=i))
        pool.append(key)
    rng = random.Random(1)
    refused = 0
    headers = {"Authorization": f"Bearer {os.environ['CLUSTER_API_KEY']}"}
    deadline = time.monotonic() + seconds
    with (
        httpx.Client(base_url=os.environ["CLUSTER_API_URL"], headers=headers, timeout=30) as http,
        path.open("a") as accepted,
    ):
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.5))
            chosen = rng.sample(pool, rng.randint(1, 24))
            body = {"images": [{"bucket": INPUT_BUCKET, "key": key} for key in chosen]}
            try:
                response = http.post("/v1/jobs", json=body)
            except httpx.HTTPError:
                refused += 1  # no answer: the job may exist, but no client would know it
                continue
            if response.status_code != 202:  # 503 while Redis has no master: nothing taken
                refused += 1
                continue
            accepted.write(json.dumps({"id": response.json()["id"], "keys": chosen}) + "\n")
            accepted.flush()
    return {"refused": refused}


def soak_jobs(path: Path) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        job = json.loads(line)
        jobs[job["id"]] = job["keys"]
    return jobs


def soak_pending(path: Path) -> dict[str, object]:
    _, job_store, _ = stores()
    pending = 0
    for job_id in soak_jobs(path):
        record = job_store.get(job_id)
        pending += record is None or not record.public.status.is_final
    return {"pending": pending}


def soak_ledger(path: Path) -> dict[str, object]:
    _, job_store, objects = stores()
    tally = Tally()
    for job_id, keys in soak_jobs(path).items():
        tally.add(job_store, objects, job_id, len(keys))
    return {
        "jobs": tally.jobs,
        "images": tally.images,
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "outcomes": dict(tally.outcomes),
        "queued": job_store.queued_images(),
        "dead_letters": job_store.dead_letter_count(),
    }


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "prepare":
        out: object = prepare()
    elif command == "submit":
        out = submit(int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else None)
    elif command == "holding":
        out = holding(args[0])
    elif command == "state":
        out = state(args)
    elif command == "ledger":
        out = ledger(Path(args[0]))
    elif command == "master":
        out = master()
    elif command == "soak-submit":
        out = soak_submit(float(args[0]), Path(args[1]))
    elif command == "soak-pending":
        out = soak_pending(Path(args[0]))
    elif command == "soak-ledger":
        out = soak_ledger(Path(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
