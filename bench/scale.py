"""What a job costs as it grows: prefix jobs of 1k, 10k (and 100k) images through the real
stack (API, Redis, the S3 server, one worker running the shapes fixture model on 64x64
images at imgsz 64, so inference does not hide the rest).

    python bench/scale.py                         # or: make bench-scale
    python bench/scale.py --sizes 1000 10000 100000 --runs 3
    python bench/scale.py --manifest-keys 1000000 # also plan a 1M-line manifest
    python bench/scale.py --smoke                 # tiny sizes: checks it runs

Per size it prints: submit latency; planning rate (keys/s); end-to-end images/s; Redis
memory per image at the peak and after completion (``INFO memory`` used_memory, less what
Redis used before the job, which also counts connections' buffers and the broker's own
keys), and what the job's own keys hold after it (``MEMORY USAGE``: its hash, chunk
markers and delivery counts, all O(chunks)); API and worker peak RSS while the job ran;
finalize time (every chunk counted -> the job final, results.jsonl written); and the p50
latency of a results page at the first and at the last offset. Then ratios against the
smallest size, measured in the same run: images/s and peak RSS. ``--manifest-keys N``
submits a manifest of N keys that do not exist (each a ``not_found`` item), measures how
fast it is planned (paced by the bounded queue), and cancels it.

The worker's queue is bounded (``YOLOQ_QUEUE_LIMIT``), so the planner waits for the worker
instead of filling Redis with queued chunks: that is what keeps the peak flat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yoloq.client import Client  # noqa: E402
from yoloq.job_store import JobStore  # noqa: E402
from yoloq.local_services import (  # noqa: E402
    ProcessGroup,
    free_port,
    port_open,
    start_redis,
    start_s3,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore  # noqa: E402
from yoloq.schemas import InferenceParams, JobPublic, ManifestSource, PrefixSource  # noqa: E402

BUCKET = "scale"
PREFIX = "scale"
WEIGHTS = ROOT / "tests" / "fixtures" / "shapes_yolov8n.pt"
QUEUE_LIMIT = 4096
PARAMS = InferenceParams(imgsz=64)
TARGETS = {
    "job_keys_bytes_per_image": 2.0,
    "redis_bytes_per_image_peak": 64.0,
    "finalize_s": 5.0,
    "page_p50_ms": 50.0,
}


def tiny_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = np.full((64, 64, 3), 40, np.uint8)
    x, y = (int(v) for v in rng.integers(4, 40, 2))
    cv2.rectangle(image, (x, y), (x + 20, y + 20), (200, 200, 200), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Sampler:
    """Samples Redis memory, RSS and the job's counts every 20 ms while a job runs."""

    jobs: JobStore
    pids: dict[str, int]
    job_id: str = ""
    peak_redis: int = 0
    peak_rss: dict[str, int] = field(default_factory=dict)
    all_counted_at: float | None = None
    final_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_redis = max(self.peak_redis, self.jobs.redis.info("memory")["used_memory"])
            for role, pid in self.pids.items():
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), rss_bytes(pid))
            fields = self.jobs.redis.hmget(
                self.jobs.keys.job(self.job_id), ["status", "done", "total", "planned_at"]
            )
            status, done, total, planned = fields
            if planned and done == total and self.all_counted_at is None:
                self.all_counted_at = time.perf_counter()
            if status in ("succeeded", "partial", "failed") and self.final_at is None:
                self.final_at = time.perf_counter()
                return

    def stop(self) -> None:
        self._stop.set()


class Stack:
    def __init__(self, group: ProcessGroup, work: Path) -> None:
        self.group = group
        redis_url = start_redis(group, free_port(), work / "redis")
        s3 = start_s3(group, free_port())
        api_key = secrets.token_urlsafe(24)
        tenant = {"tenant": "scale", "buckets": [BUCKET]}
        env = {
            "YOLOQ_API_KEYS": json.dumps({hashlib.sha256(api_key.encode()).hexdigest(): tenant}),
            "YOLOQ_REDIS_URL": redis_url,
            "YOLOQ_S3_ENDPOINT_URL": s3,
            "YOLOQ_INPUT_BUCKETS": BUCKET,
            "YOLOQ_KEY_PREFIX": PREFIX,
            "YOLOQ_MODEL": str(WEIGHTS),
            "YOLOQ_CACHE_DIR": str(work / "cache"),
            "YOLOQ_METRICS_PORT": "0",
            "YOLOQ_QUEUE_LIMIT": str(QUEUE_LIMIT),
            "YOLOQ_WARMUP_IMGSZ": "64",
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "scale"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "scale"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
        os.environ.update(env)
        self.store = ObjectStore(s3)
        for bucket in (BUCKET, "yoloq-results", "yoloq-uploads"):
            self.store.ensure_bucket(bucket)
        self.jobs = JobStore.from_url(redis_url, PREFIX)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = group.start("api", yoloq_argv("api", "--port", str(port)), env)
        group.wait_ready(self.api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        self.client = Client(self.api_url, api_key=api_key, timeout_s=120)
        self.api_key = api_key
        self.worker = group.start("worker", yoloq_argv("worker", "--device", "cpu"), env)
        group.wait_ready(self.worker, self.client.ready, timeout_s=600)

    def pids(self) -> dict[str, int]:
        return {"api": self.api.popen.pid, "worker": self.worker.popen.pid}

    def put_images(self, prefix: str, count: int) -> None:
        data = [tiny_jpeg(seed) for seed in range(16)]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda n: self.store.put(BUCKET, f"{prefix}{n:07d}.jpg", data[n % 16]),
                    range(count),
                )
            )

    def page_p50_ms(self, job_id: str, offset: int, tries: int = 21) -> float:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        samples = []
        with httpx.Client(base_url=self.api_url, headers=headers, timeout=30) as http:
            for _ in range(tries):
                started = time.perf_counter()
                http.get(f"/v1/jobs/{job_id}/results", params={"offset": offset, "limit": 100})
                samples.append(1000 * (time.perf_counter() - started))
        return statistics.median(samples)


def seconds_between(start: datetime | None, end: datetime | None) -> float:
    assert start is not None and end is not None
    return (end - start).total_seconds()


def run_size(stack: Stack, size: int, run: int) -> dict[str, Any]:
    prefix = f"run{run}/n{size}/"
    stack.put_images(prefix, size)
    time.sleep(1.0)  # let Redis settle before its baseline
    baseline = stack.jobs.redis.info("memory")["used_memory"]
    sampler = Sampler(stack.jobs, stack.pids())
    started = time.perf_counter()
    accepted = stack.client.submit(PrefixSource(bucket=BUCKET, prefix=prefix), PARAMS)
    submit_ms = 1000 * (time.perf_counter() - started)
    sampler.job_id = accepted.id
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    job: JobPublic = stack.client.wait(accepted.id, timeout_s=3600)
    thread.join(30)
    sampler.stop()
    assert job.status.value == "succeeded" and job.total == size, job
    time.sleep(0.5)
    after = stack.jobs.redis.info("memory")["used_memory"]
    names = stack.jobs.keys
    job_keys = [names.job(job.id), names.job_chunks_done(job.id), names.job_deliveries(job.id)]
    job_keys += [names.job_items(job.id), names.job_planner(job.id)]
    kept = sum(stack.jobs.redis.memory_usage(key) or 0 for key in job_keys)
    finalize_s = (sampler.final_at or 0) - (sampler.all_counted_at or 0)
    return {
        "images": size,
        "submit_ms": submit_ms,
        "planning_keys_per_s": size / seconds_between(job.created_at, job.planned_at),
        "images_per_s": size / seconds_between(job.created_at, job.finished_at),
        "redis_bytes_per_image_peak": (sampler.peak_redis - baseline) / size,
        "redis_bytes_per_image_after": (after - baseline) / size,
        "job_keys_bytes_per_image": kept / size,
        "api_peak_rss_mb": sampler.peak_rss["api"] / 2**20,
        "worker_peak_rss_mb": sampler.peak_rss["worker"] / 2**20,
        "finalize_s": finalize_s,
        "page_first_p50_ms": stack.page_p50_ms(accepted.id, 0),
        "page_last_p50_ms": stack.page_p50_ms(accepted.id, size - 100),
    }


def plan_manifest(stack: Stack, keys: int) -> dict[str, Any]:
    """A manifest of ``keys`` lines planned, then cancelled: the planning rate."""
    manifest = ManifestSource(bucket=BUCKET, key=f"manifests/{keys}.jsonl")
    body = b"".join(b'{"key": "missing/%09d.jpg"}\n' % n for n in range(keys))
    stack.store.put(BUCKET, manifest.key, body)
    accepted = stack.client.submit(manifest, PARAMS)
    # The queue is bounded, so this is planning paced by the worker (keys that do not
    # exist fail fast, each a not_found item), not listing alone.
    job = stack.client.job(accepted.id)
    while job.planned_at is None:
        time.sleep(0.5)
        job = stack.client.job(accepted.id)
    rate = job.total / seconds_between(job.created_at, job.planned_at)
    httpx.delete(
        f"{stack.api_url}/v1/jobs/{accepted.id}",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    return {"keys": keys, "planned": job.total, "planning_keys_per_s": rate}


COLUMNS = [
    ("images", "{:.0f}"),
    ("submit_ms", "{:.1f}"),
    ("planning_keys_per_s", "{:.0f}"),
    ("images_per_s", "{:.0f}"),
    ("redis_bytes_per_image_peak", "{:.1f}"),
    ("redis_bytes_per_image_after", "{:.2f}"),
    ("job_keys_bytes_per_image", "{:.2f}"),
    ("api_peak_rss_mb", "{:.0f}"),
    ("worker_peak_rss_mb", "{:.0f}"),
    ("finalize_s", "{:.2f}"),
    ("page_first_p50_ms", "{:.1f}"),
    ("page_last_p50_ms", "{:.1f}"),
]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread (min-max) over runs of one size."""
    return {
        name: {
            "median": statistics.median(r[name] for r in rows),
            "min": min(r[name] for r in rows),
            "max": max(r[name] for r in rows),
        }
        for name, _ in COLUMNS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--manifest-keys", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="sizes 120 and 240, one run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    sizes, runs = ([120, 240], 1) if args.smoke else (args.sizes, args.runs)
    with tempfile.TemporaryDirectory() as tmp, ProcessGroup(Path(tmp) / "logs") as group:
        stack = Stack(group, Path(tmp))
        rows: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
        for run in range(runs):
            for size in sizes:
                row = run_size(stack, size, run)
                rows[size].append(row)
                print(" ".join(f"{n}={fmt.format(row[n])}" for n, fmt in COLUMNS), flush=True)
        manifest = plan_manifest(stack, args.manifest_keys) if args.manifest_keys else None
    table = {size: summarise(found) for size, found in rows.items()}
    print("\n| " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for size in sizes:
        cells = []
        for name, fmt in COLUMNS:
            s = table[size][name]
            cell = fmt.format(s["median"])
            if runs > 1 and name != "images":
                cell += f" ({fmt.format(s['min'])}–{fmt.format(s['max'])})"
            cells.append(cell)
        print("| " + " | ".join(cells) + " |")
    smallest, largest = sizes[0], sizes[-1]
    ratios = {}
    for name in ("images_per_s", "api_peak_rss_mb", "worker_peak_rss_mb"):
        per_run = [
            big[name] / small[name]
            for small, big in zip(rows[smallest], rows[largest], strict=True)
        ]
        ratios[f"{name}_{largest}/{smallest}"] = per_run
        spread = f"{min(per_run):.2f}-{max(per_run):.2f}"
        print(f"{name}_{largest}/{smallest}={statistics.median(per_run):.2f} ({spread})")
    met = {
        name: all(row[name] <= limit for row in rows[largest])
        for name, limit in TARGETS.items()
        if name in rows[largest][0]
    }
    met["page_p50_ms"] = all(
        max(row["page_first_p50_ms"], row["page_last_p50_ms"]) <= TARGETS["page_p50_ms"]
        for size in sizes
        for row in rows[size]
    )
    if manifest:
        print(
            f"manifest: {manifest['planned']} keys planned at "
            f"{manifest['planning_keys_per_s']:.0f} keys/s"
        )
    print("targets met in every run: " + ", ".join(f"{k}={v}" for k, v in met.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "smoke": args.smoke,
        "sizes": sizes,
        "runs": rows,
        "table": table,
        "ratios": ratios,
        "targets_met": met,
        "manifest": manifest,
    }
    path = args.out / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
