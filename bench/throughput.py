"""Pipeline throughput against in-process Ultralytics, measured side by side in one run.

    python bench/throughput.py            # or: make bench
    python bench/throughput.py --images 64 --weights my.pt --imgsz 640
    python bench/throughput.py --smoke    # a few images through every row: checks it runs

Rows (images/s, decoding included everywhere; the same JPEGs for every row):
  a       in-process .pt, ``for f in files: model(f)``, Ultralytics' defaults
  best    the fastest in-process configuration found here (backend, threads, batch):
          .pt, ONNX, OpenVINO FP32 and OpenVINO INT8 (made with ``yoloq export``,
          calibrated on shapes images that are not the benchmark's, and kept only
          within its mAP budget), each scored for mAP on a labelled held-out set; an
          OpenVINO export both as Ultralytics runs it and as a worker compiles and runs
          it (``worker-compile``: workers/openvino.py), so the worker's way of running a
          batch counts in ``best`` as well as in ``c_best``
  c_pt    API -> Redis -> worker -> S3 -> Redis, one job of N images, .pt (after a
          16-image job that warms the new worker, as the in-process rows warm theirs)
  c_best  the same with the fastest backend
  d       N one-image jobs submitted at once (mean batch size reported)
  overhead  submit-to-result latency of one-image jobs on an idle warm worker, p50/p95,
            minus in-process latency for the same image; and the median time by stage
  overhead_cpu_ms_per_image  during c_best and d: CPU seconds of the API, Redis, the S3
            server and the worker beyond what in-process Ultralytics spends on the same
            images with the same backend (read from /proc/<pid>/stat), per image

Prints ``name=value`` ratios and writes JSON to bench/results/. Machines here are noisy;
ratios taken in one run are what to compare, not absolute numbers across runs. ``--smoke``
numbers mean nothing: it only proves every row still runs end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_shapes_dataset import generate_image  # noqa: E402
from workers.model import trained_imgsz  # noqa: E402
from workers.weights_info import weights_format  # noqa: E402
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
from yoloq.schemas import ImageRef, InferenceParams, JobStatus, WorkerHeartbeat  # noqa: E402

BUCKET = "bench"
PREFIX = "bench"
# The targets for a 2-core CPU machine: (ratio, at least) or (ms, at most).
TARGETS = {
    "c_best/a": 1.5,
    "c_best/best": 0.85,
    "d/best": 0.75,
    "best_openvino/best_pt": 2.0,
}
OVERHEAD_TARGET_MS = 25.0
OVERHEAD_CPU_TARGET_MS = 4.0
"""At most, per image, in c_best."""


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
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800).stdout
    # Ultralytics may print before the result: the JSON is the last line.
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def export(weights: Path, out: Path, fmt: str, *options: str) -> Path | None:
    """``yoloq export``; None, with the reason printed, when it refuses the export (an
    INT8 model past its mAP budget)."""
    argv = yoloq_argv("export", str(weights), "--format", fmt, "--out", str(out))
    done = subprocess.run(
        [*argv, *options],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        print(f"  {out.name} not made: {done.stderr.strip().splitlines()[-1]}", flush=True)
        return None
    return out


def labelled_set(folder: Path, count: int) -> Path:
    """A labelled shapes set (the fixture's held-out seed) to score every backend on, and
    other shapes images in its train split to calibrate INT8 on."""
    script = ROOT / "scripts" / "make_shapes_dataset.py"
    arguments = ["--seed", "5", "--count", str(count), "--val-seed", "1"]
    arguments += ["--val-count", str(count)]
    subprocess.run(
        [sys.executable, str(script), "--out", str(folder), *arguments],
        check=True,
        capture_output=True,
    )
    return folder / "shapes.yaml"


def openvino_backends(
    weights: Path, work: Path, imgsz: int, labelled: Path, smoke: bool
) -> dict[str, Path]:
    """OpenVINO exports of the .pt by format, each scored against it at ``imgsz``."""
    found = {}
    scored = ("--imgsz", str(imgsz), "--data", str(labelled))
    ov = export(weights, work / "fp32_openvino_model", "openvino", *scored)
    if ov is not None:
        found["openvino"] = ov
    calibration = ("--calibration", str(labelled.parent / "images" / "train"))
    calibration += ("--calibration-images", "8" if smoke else "300")
    int8 = export(
        weights, work / "int8_openvino_model", "openvino", "--int8", *calibration, *scored
    )
    if int8 is not None:
        found["openvino-int8"] = int8
    return found


def map50(weights: Path) -> float | None:
    """An export's mAP@0.5 and its .pt's, as ``yoloq export --data`` recorded them."""
    accuracy = weights / "accuracy.json"
    if not accuracy.is_file():
        return None
    return float(json.loads(accuracy.read_text())["export_map50"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        self.watcher = JobWatcher(self.jobs)
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
            f"worker-{weights_format(weights)}", yoloq_argv("worker", "--device", "auto"), env
        )
        self.group.wait_ready(self.worker, self.client.ready, timeout_s=600)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process the pipeline runs on."""
        found = {
            role: cpu_seconds(
                next(p.popen.pid for p in self.group.processes if p.name.startswith(role))
            )
            for role in ("api", "redis", "s3")
        }
        assert self.worker is not None
        found["worker"] = cpu_seconds(self.worker.popen.pid)
        return found

    def precision(self) -> str:
        return self.heartbeat().models[0].precision

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
        """Returns when the last of these jobs ended (``time.perf_counter()``), as its
        final event arrived: the bench waits as a client on events does, so it spends no
        Redis or CPU time polling hundreds of jobs on the cores the pipeline runs on."""
        return self.watcher.wait_all(job_ids, timeout_s)


class JobWatcher:
    """When each job ended, from the job events channel (``yoloq/lua/publish_event.lua``),
    subscribed before any job is submitted."""

    def __init__(self, jobs: JobStore) -> None:
        self.ended: dict[str, float] = {}
        self.changed = threading.Condition()
        self.pubsub = jobs.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(jobs.keys.job_events())
        threading.Thread(target=self._listen, name="job-events", daemon=True).start()

    def _listen(self) -> None:
        try:
            for message in self.pubsub.listen():
                event = json.loads(message["data"])
                if JobStatus(event["status"]).is_final:
                    with self.changed:
                        self.ended.setdefault(event["job"], time.perf_counter())
                        self.changed.notify_all()
        except redis.ConnectionError:
            return  # the bench's Redis stopped: nothing is left to wait for

    def wait_all(self, job_ids: list[str], timeout_s: float) -> float:
        with self.changed:
            if not self.changed.wait_for(
                lambda: all(job in self.ended for job in job_ids), timeout_s
            ):
                missing = [job for job in job_ids if job not in self.ended]
                raise TimeoutError(f"{len(missing)} jobs did not end in {timeout_s} s")
            return max(self.ended[job] for job in job_ids)


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}


def warm_job(stack: Stack, refs: list[ImageRef]) -> None:
    """One small job before a worker is timed, as the in-process rows run the model on
    the benchmark's own images before theirs: the first job of a new worker also opens
    its connections and runs its code paths for the first time."""
    stack.wait_all([stack.client.submit(refs[:16], stack.params).id])


def one_job(stack: Stack, refs: list[ImageRef]) -> tuple[float, dict[str, float]]:
    cpu = stack.cpu()
    started = time.perf_counter()
    job = stack.client.submit(refs, stack.params)
    rate = len(refs) / (stack.wait_all([job.id]) - started)
    return rate, cpu_used(cpu, stack.cpu())


def many_jobs(stack: Stack, refs: list[ImageRef]) -> tuple[float, float, dict[str, float]]:
    before, done = stack.batch_histogram()
    cpu = stack.cpu()
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = [
            job.id for job in pool.map(lambda ref: stack.client.submit([ref], stack.params), refs)
        ]
    rate = len(refs) / (stack.wait_all(ids) - started)
    used = cpu_used(cpu, stack.cpu())
    after, _ = stack.batch_histogram(done + len(refs))
    delta = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    batches = sum(delta.values())
    mean_batch = sum(size * n for size, n in delta.items()) / batches if batches else 0.0
    return rate, mean_batch, used


def overhead_cpu(used: dict[str, float], in_process_cpu_per_image: float, images: int) -> dict:
    """Milliseconds of CPU per image the pipeline spends beyond in-process inference."""
    beyond = used["worker"] - in_process_cpu_per_image * images
    parts = {"api": used["api"], "redis": used["redis"], "s3": used["s3"], "worker": beyond}
    per_image = {role: 1000 * seconds / images for role, seconds in parts.items()}
    return {"total": sum(per_image.values()), **per_image}


STAGES = ("submit", "to_worker", "download", "decode", "batch_wait", "inference", "record", "seen")
"""Where a one-image job's time goes: the API storing and queueing it; the broker and
Celery handing it to a worker; the image's own timings; recording and finalising (Redis
and the results PUT); and the job's final event reaching the bench."""


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
        onnx = export(args.weights, work / f"{args.weights.stem}.onnx", "onnx")
        assert onnx is not None
        # The .pt's training size, which its export records, unless told: every row
        # infers at it.
        imgsz = args.imgsz or trained_imgsz(onnx, {})
        print(
            f"{len(paths)} images 640x480, {cores} cores; weights {args.weights.name}, "
            f"imgsz {imgsz}",
            flush=True,
        )
        labelled = labelled_set(work / "labelled", 8 if args.smoke else 60)
        formats = {"pt": args.weights, "onnx": onnx}
        formats |= openvino_backends(args.weights, work, imgsz, labelled, args.smoke)

        rows: dict[str, Any] = {}
        # What a user writes first: Ultralytics' defaults, at the size every row uses.
        rows["a"] = in_process(args.weights, work / "images", imgsz=args.imgsz)
        candidates: dict[str, dict[str, Any]] = {}
        weights_of: dict[str, Path] = {}
        for fmt, weights in formats.items():
            # An OpenVINO export both as Ultralytics runs it and as a worker does.
            compiles = (False, True) if fmt.startswith("openvino") else (False,)
            for batch, worker_compile in itertools.product(batches, compiles):
                name = f"{fmt} threads={cores} batch={batch}"
                name += " worker-compile" if worker_compile else ""
                weights_of[name] = weights
                candidates[name] = in_process(
                    weights,
                    work / "images",
                    threads=cores,
                    batch=batch,
                    imgsz=imgsz,
                    worker_compile=worker_compile,
                )
                candidates[name]["format"] = fmt
                candidates[name]["map50"] = map50(weights)
                print(
                    f"  in-process {name}: {candidates[name]['images_per_s']:.1f} images/s",
                    flush=True,
                )
        scored = [w for f, w in formats.items() if f.startswith("openvino")]
        if scored:
            accuracy = json.loads((scored[0] / "accuracy.json").read_text())
            scores = {"pt": accuracy["pt_map50"]} | {
                f: map50(w) for f, w in formats.items() if f.startswith("openvino")
            }
            print(
                f"  mAP@0.5 at {imgsz} on {accuracy['images']} held-out images: "
                + ", ".join(f"{f} {score:.4f}" for f, score in scores.items() if score)
            )

        def fastest(prefix: str = "") -> str:
            names = [n for n in candidates if candidates[n]["format"].startswith(prefix)]
            return max(names, key=lambda n: candidates[n]["images_per_s"])

        best_name = fastest()
        rows["best"] = {**candidates[best_name], "config": best_name}
        best_weights = weights_of[best_name]
        single = in_process(
            best_weights,
            work / "images",
            threads=cores,
            batch=1,
            imgsz=imgsz,
            latency=args.latency_samples,
            worker_compile="worker-compile" in best_name,
        )
        pt_cpu = candidates[fastest("pt")]["cpu_s"] / len(paths)
        best_cpu = candidates[best_name]["cpu_s"] / len(paths)

        with ProcessGroup(work / "logs") as group:
            stack = Stack(group, work, InferenceParams(imgsz=imgsz), imgsz)
            refs = stack.upload(paths)
            stack.start_worker(args.weights)
            warm_job(stack, refs)
            rate, used = one_job(stack, refs)
            rows["c_pt"] = {
                "images_per_s": rate,
                "max_batch": stack.max_batch(),
                "overhead_cpu_ms_per_image": overhead_cpu(used, pt_cpu, len(refs)),
            }
            stack.start_worker(best_weights)
            warm_job(stack, refs)
            rate, used = one_job(stack, refs)
            rows["c_best"] = {
                "images_per_s": rate,
                "backend": f"{candidates[best_name]['format']} {stack.precision()}",
                "max_batch": stack.max_batch(),
                "overhead_cpu_ms_per_image": overhead_cpu(used, best_cpu, len(refs)),
            }
            rate, mean_batch, used = many_jobs(stack, refs)
            rows["d"] = {
                "images_per_s": rate,
                "mean_batch": mean_batch,
                "overhead_cpu_ms_per_image": overhead_cpu(used, best_cpu, len(refs)),
            }
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
    if any(c["format"].startswith("openvino") for c in candidates.values()):
        best_openvino = max(
            c["images_per_s"] for c in candidates.values() if c["format"].startswith("openvino")
        )
        best_pt = max(c["images_per_s"] for c in candidates.values() if c["format"] == "pt")
        ratios["best_openvino/best_pt"] = best_openvino / best_pt

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
    for name in ("c_pt", "c_best", "d"):
        cpu = rows[name]["overhead_cpu_ms_per_image"]
        print(
            f"overhead_cpu_ms_per_image[{name}] {cpu['total']:.2f}: "
            + ", ".join(f"{role} {ms:.2f}" for role, ms in cpu.items() if role != "total")
        )
    print()
    met = {name: value >= TARGETS[name] for name, value in ratios.items() if name in TARGETS}
    met["overhead_p50_ms"] = o["p50_ms"] <= OVERHEAD_TARGET_MS
    cpu_c = rows["c_best"]["overhead_cpu_ms_per_image"]["total"]
    met["overhead_cpu_ms_per_image"] = cpu_c <= OVERHEAD_CPU_TARGET_MS
    for name, value in ratios.items():
        target = ""
        if name in TARGETS:
            target = f"  (target >= {TARGETS[name]}: {'met' if met[name] else 'not met'})"
        print(f"{name}={value:.2f}{target}")
    print(
        f"overhead_p50_ms={o['p50_ms']:.1f}  (target <= {OVERHEAD_TARGET_MS:.0f}: "
        f"{'met' if met['overhead_p50_ms'] else 'not met'})"
    )
    print(
        f"overhead_cpu_ms_per_image={cpu_c:.2f}  (c_best; target <= "
        f"{OVERHEAD_CPU_TARGET_MS:.0f}: {'met' if met['overhead_cpu_ms_per_image'] else 'not met'})"
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
