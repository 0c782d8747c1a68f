"""Pipeline throughput against in-process Ultralytics, measured side by side in one run.

    python bench/throughput.py            # or: make bench
    python bench/throughput.py --images 64 --weights my.pt --imgsz 640
    python bench/throughput.py --smoke    # a few images through every row: checks it runs

Rows (images/s, decoding included everywhere; the same JPEGs for every row):
  a       in-process .pt, ``for f in files: model(f)``, Ultralytics' defaults
  best    the fastest in-process configuration found here (backend, threads, batch)
  c_pt    API -> Redis -> worker -> S3 -> Redis, one job of N images, .pt
  c_best  the same with the fastest backend
  d       N one-image jobs submitted at once (mean batch size reported)
  overhead  submit-to-result latency of one-image jobs on an idle warm worker, p50/p95,
            minus in-process latency for the same image; and the median time by stage

Prints ``name=value`` ratios and writes JSON to bench/results/. Machines here are noisy;
ratios taken in one run are what to compare, not absolute numbers across runs. ``--smoke``
numbers mean nothing: it only proves every row still runs end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_shapes_dataset import generate_image  # noqa: E402
from workers.model import trained_imgsz  # noqa: E402
from yoloq.client import Client  # noqa: E402
from yoloq.job_store import JobStore  # noqa: E402
from yoloq.local_services import (  # noqa: E402
    Process,
    ProcessGroup,
    free_port,
    port_open,
    start_redis,
    start_s3,
    wait_until,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore  # noqa: E402
from yoloq.schemas import ImageRef, InferenceParams, WorkerHeartbeat  # noqa: E402

BUCKET = "bench"
PREFIX = "bench"
# The targets for a 2-core CPU machine: (ratio, at least) or (ms, at most).
TARGETS = {"c_best/a": 1.5, "c_best/best": 0.8, "d/best": 0.7}
OVERHEAD_TARGET_MS = 30.0


def make_images(folder: Path, count: int) -> list[Path]:
    """Shapes images, 640x480 JPEG (a common camera frame), drawn from a fixed seed."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image, _ = generate_image(9000 + i, size=(640, 480))
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def in_process(weights: Path, images: Path, **options: Any) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "bench" / "inprocess.py"), "--weights", str(weights)]
    argv += ["--images", str(images)]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name}", str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800).stdout
    # Ultralytics may print before the result: the JSON is the last line.
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def export_onnx(weights: Path, folder: Path) -> Path:
    out = folder / f"{weights.stem}.onnx"
    subprocess.run(
        yoloq_argv("export", str(weights), "--format", "onnx", "--out", str(out)),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


class Stack:
    """Redis, S3, the API and one worker, all on loopback."""

    def __init__(
        self, group: ProcessGroup, work: Path, params: InferenceParams, warmup_imgsz: int
    ) -> None:
        self.group = group
        self.params = params
        redis_url = start_redis(group, free_port(), work / "redis")
        s3 = start_s3(group, free_port())
        api_key = secrets.token_urlsafe(24)
        tenant = {"tenant": "bench", "buckets": [BUCKET]}
        self.env = {
            "YOLOQ_API_KEYS": json.dumps({hashlib.sha256(api_key.encode()).hexdigest(): tenant}),
            "YOLOQ_REDIS_URL": redis_url,
            "YOLOQ_S3_ENDPOINT_URL": s3,
            "YOLOQ_INPUT_BUCKETS": BUCKET,
            "YOLOQ_KEY_PREFIX": PREFIX,
            "YOLOQ_MODEL_NAME": "bench",  # one queue whichever backend serves it
            "YOLOQ_CACHE_DIR": str(work / "cache"),
            "YOLOQ_METRICS_PORT": "0",
            "YOLOQ_MAX_IMAGES_PER_JOB": "100000",
            # Workers measure batch sizes and warm up at the size the jobs ask for.
            "YOLOQ_WARMUP_IMGSZ": str(warmup_imgsz),
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
        os.environ.update(self.env)
        self.store = ObjectStore(s3)
        for bucket in (BUCKET, "yoloq-results", "yoloq-uploads"):
            self.store.ensure_bucket(bucket)
        self.jobs = JobStore.from_url(redis_url, PREFIX)
        port = free_port()
        api = group.start("api", yoloq_argv("api", "--port", str(port)), self.env)
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        self.client = Client(f"http://127.0.0.1:{port}", api_key=api_key, timeout_s=120)
        self.worker: Process | None = None

    def upload(self, paths: list[Path]) -> list[ImageRef]:
        refs = []
        for path in paths:
            self.store.put(BUCKET, f"images/{path.name}", path.read_bytes(), "image/jpeg")
            refs.append(ImageRef(bucket=BUCKET, key=f"images/{path.name}"))
        return refs

    def start_worker(self, weights: Path) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.group.processes.remove(self.worker)
        self.jobs.redis.delete(self.jobs.keys.workers())
        env = {**self.env, "YOLOQ_MODEL": str(weights)}
        self.worker = self.group.start(
            f"worker-{weights.suffix[1:]}", yoloq_argv("worker", "--device", "auto"), env
        )
        self.group.wait_ready(self.worker, self.client.ready, timeout_s=600)

    def max_batch(self) -> int:
        """The batch size the worker chose at warm-up (or was given)."""
        return self.heartbeat().max_batch

    def heartbeat(self) -> WorkerHeartbeat:
        # Read from Redis, not /v1/workers: that needs an admin key.
        [beat] = self.jobs.live_workers(60)
        return beat

    def batch_histogram(self, images_done: int = 0) -> tuple[dict[int, int], int]:
        """Batches run by size and images done, from the first heartbeat that counts at
        least ``images_done`` images (heartbeats lag the work by up to one interval)."""
        wait_until(
            lambda: self.heartbeat().images_done >= images_done,
            30,
            "a heartbeat with every image counted",
            interval_s=0.1,
        )
        beat = self.heartbeat()
        return dict(beat.batch_sizes), beat.images_done

    def wait_all(self, job_ids: list[str], timeout_s: float = 1800) -> float:
        """Poll Redis until every job is final; returns when. One job is polled every
        2 ms (latency); many, every 20 ms, so the polling does not steal the worker's CPU."""
        pending = set(job_ids)
        final = {"succeeded", "partial", "failed", "cancelled"}

        def done() -> bool:
            pipe = self.jobs.redis.pipeline()
            ordered = list(pending)
            for job_id in ordered:
                pipe.hget(self.jobs.keys.job(job_id), "status")
            for job_id, status in zip(ordered, pipe.execute(), strict=True):
                if status in final:
                    pending.discard(job_id)
            return not pending

        interval = 0.002 if len(job_ids) == 1 else 0.02
        wait_until(done, timeout_s, "jobs to finish", interval_s=interval)
        return time.perf_counter()


def one_job(stack: Stack, refs: list[ImageRef]) -> float:
    started = time.perf_counter()
    job = stack.client.submit(refs, stack.params)
    return len(refs) / (stack.wait_all([job.id]) - started)


def many_jobs(stack: Stack, refs: list[ImageRef]) -> tuple[float, float]:
    before, done = stack.batch_histogram()
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = [
            job.id for job in pool.map(lambda ref: stack.client.submit([ref], stack.params), refs)
        ]
    rate = len(refs) / (stack.wait_all(ids) - started)
    after, _ = stack.batch_histogram(done + len(refs))
    delta = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    batches = sum(delta.values())
    mean_batch = sum(size * n for size, n in delta.items()) / batches if batches else 0.0
    return rate, mean_batch


STAGES = ("submit", "to_worker", "download", "decode", "batch_wait", "inference", "record", "seen")
"""Where a one-image job's time goes: the API storing and queueing it; the broker and
Celery handing it to a worker; the image's own timings; recording and finalising (Redis
and the results PUT); and the bench's own polling."""


def latency(stack: Stack, ref: ImageRef, count: int) -> tuple[list[float], list[dict[str, float]]]:
    """Submit-to-result seconds of ``count`` one-image jobs, one at a time, and where the
    time of each went (read after it is measured, so reading costs it nothing)."""
    samples, stages = [], []
    for _ in range(count):
        submitted = time.time()
        started = time.perf_counter()
        job = stack.client.submit([ref], stack.params)
        samples.append(stack.wait_all([job.id]) - started)
        seen = submitted + samples[-1]
        public = stack.client.job(job.id)
        [item] = list(stack.client.results(job.id))
        timings = item.timings
        assert public.started_at and public.finished_at and timings
        created, began = public.created_at.timestamp(), public.started_at.timestamp()
        finished = public.finished_at.timestamp()
        image = {
            "download": timings.download_s or 0.0,
            "decode": timings.decode_s or 0.0,
            "batch_wait": timings.batch_wait_s or 0.0,
            "inference": timings.inference_s or 0.0,
        }
        stages.append(
            {
                "submit": created - submitted,
                "to_worker": began - created,
                **image,
                "record": finished - began - sum(image.values()),
                "seen": seen - finished,
            }
        )
    return samples, stages


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--weights", type=Path, default=ROOT / "tests/fixtures/shapes_yolov8n.pt")
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument(
        "--imgsz", type=int, help="inference size for every row (default: the training size)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--smoke", action="store_true", help="4 images, batch 1 only: proves the rows run"
    )
    args = parser.parse_args()
    if args.smoke:
        args.images, args.latency_samples = 4, 3
    batches = (1,) if args.smoke else (1, 4)
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="yoloq-bench-") as tmp:
        work = Path(tmp)
        paths = make_images(work / "images", args.images)
        onnx = export_onnx(args.weights, work)
        # The .pt's training size, which its export records: every row infers at it.
        imgsz = args.imgsz or trained_imgsz(onnx, {})
        print(
            f"{len(paths)} images 640x480, {cores} cores; weights {args.weights.name}, "
            f"imgsz {imgsz}",
            flush=True,
        )

        rows: dict[str, Any] = {}
        # What a user writes first: Ultralytics' defaults, at the size every row uses.
        rows["a"] = in_process(args.weights, work / "images", imgsz=args.imgsz)
        candidates = {}
        for weights in (args.weights, onnx):
            for batch in batches:
                name = f"{weights.suffix[1:]} threads={cores} batch={batch}"
                candidates[name] = in_process(
                    weights, work / "images", threads=cores, batch=batch, imgsz=imgsz
                )
                print(
                    f"  in-process {name}: {candidates[name]['images_per_s']:.1f} images/s",
                    flush=True,
                )
        best_name = max(candidates, key=lambda n: candidates[n]["images_per_s"])
        rows["best"] = {**candidates[best_name], "config": best_name}
        best_weights = onnx if best_name.startswith("onnx") else args.weights
        best_threads = int(best_name.split("threads=")[1].split()[0])
        single = in_process(
            best_weights,
            work / "images",
            threads=best_threads,
            batch=1,
            imgsz=imgsz,
            latency=args.latency_samples,
        )

        with ProcessGroup(work / "logs") as group:
            stack = Stack(group, work, InferenceParams(imgsz=imgsz), imgsz)
            refs = stack.upload(paths)
            stack.start_worker(args.weights)
            rows["c_pt"] = {"images_per_s": one_job(stack, refs), "max_batch": stack.max_batch()}
            stack.start_worker(best_weights)
            rows["c_best"] = {
                "images_per_s": one_job(stack, refs),
                "backend": best_weights.suffix[1:],
                "max_batch": stack.max_batch(),
            }
            rate, mean_batch = many_jobs(stack, refs)
            rows["d"] = {"images_per_s": rate, "mean_batch": mean_batch}
            samples, stages = latency(stack, refs[0], args.latency_samples)
            stack.client.close()

    base = statistics.median(single["latencies_s"])
    rows["overhead"] = {
        "p50_ms": 1000 * (percentile(samples, 50) - base),
        "p95_ms": 1000 * (percentile(samples, 95) - base),
        "in_process_p50_ms": 1000 * base,
        "stages_p50_ms": {
            stage: 1000 * statistics.median(s[stage] for s in stages) for stage in STAGES
        },
    }
    ratios = {
        "c_best/a": rows["c_best"]["images_per_s"] / rows["a"]["images_per_s"],
        "c_best/best": rows["c_best"]["images_per_s"] / rows["best"]["images_per_s"],
        "c_pt/a": rows["c_pt"]["images_per_s"] / rows["a"]["images_per_s"],
        "d/best": rows["d"]["images_per_s"] / rows["best"]["images_per_s"],
    }

    print(f"\n{'row':<10}{'images/s':>10}  notes")
    for name in ("a", "best", "c_pt", "c_best", "d"):
        row = rows[name]
        notes = {
            "a": f"Ultralytics defaults ({rows['a']['torch_threads']} torch threads)",
            "best": rows["best"]["config"],
            "c_pt": f"worker max batch {rows['c_pt']['max_batch']}",
            "c_best": f"backend {rows['c_best']['backend']}, "
            f"worker max batch {rows['c_best']['max_batch']}",
            "d": f"mean batch {rows['d']['mean_batch']:.2f}",
        }.get(name, "")
        print(f"{name:<10}{row['images_per_s']:>10.1f}  {notes}")
    o = rows["overhead"]
    print(
        f"overhead  p50 {o['p50_ms']:.1f} ms, p95 {o['p95_ms']:.1f} ms "
        f"(in-process single image {o['in_process_p50_ms']:.1f} ms)"
    )
    print(
        "  one-image job, p50 ms by stage: "
        + ", ".join(f"{stage} {ms:.1f}" for stage, ms in o["stages_p50_ms"].items())
    )
    print()
    met = {name: value >= TARGETS[name] for name, value in ratios.items() if name in TARGETS}
    met["overhead_p50_ms"] = o["p50_ms"] <= OVERHEAD_TARGET_MS
    for name, value in ratios.items():
        target = ""
        if name in TARGETS:
            target = f"  (target >= {TARGETS[name]}: {'met' if met[name] else 'not met'})"
        print(f"{name}={value:.2f}{target}")
    print(
        f"overhead_p50_ms={o['p50_ms']:.1f}  (target <= {OVERHEAD_TARGET_MS:.0f}: "
        f"{'met' if met['overhead_p50_ms'] else 'not met'})"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "images": args.images,
        "imgsz": imgsz,
        "smoke": args.smoke,
        "cores": cores,
        "weights": str(args.weights),
        "rows": rows,
        "candidates": candidates,
        "ratios": ratios,
        "targets_met": met,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = args.out / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
