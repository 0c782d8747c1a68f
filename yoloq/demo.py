"""``yoloq demo``: the whole service on one machine, and a job run through it.

Uses the Redis and S3 named by ``YOLOQ_REDIS_URL`` / ``YOLOQ_S3_ENDPOINT_URL`` when they
are set, and otherwise starts its own on loopback; then a worker (GPU if there is one),
the API, a job on the sample images, and prints what was found.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from yoloq import keys
from yoloq.client import Client
from yoloq.evaluation import Score, read_yolo_labels, score
from yoloq.local_services import (
    ProcessGroup,
    free_port,
    port_open,
    start_redis,
    start_s3,
    wait_until,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore
from yoloq.progress import JobProgress
from yoloq.results import (
    ClassifyItem,
    ObbDetection,
    PoseDetection,
    ResultItem,
    SegmentDetection,
    detections_of,
)
from yoloq.schemas import ImageRef, JobPublic, JobStatus

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE_MODEL = FIXTURES / "shapes_yolov8n.pt"
SAMPLES = FIXTURES / "samples"
WORK_DIR = Path(".demo")
TASK_MODELS = {
    "shapes": "shapes_yolov8n.pt",
    "parts-seg": "shapes_yolov8n-seg.pt",
    "robot-pose": "shapes_yolov8n-pose.pt",
    "aerial-obb": "shapes_yolov8n-obb.pt",
    "pass-fail": "shapes_yolov8n-cls.pt",
}
"""``yoloq demo --tasks``: the fixture model of every task, pushed to the registry."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _redis_url(group: ProcessGroup) -> str:
    url = os.environ.get("YOLOQ_REDIS_URL")
    if url:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        say(f"using Redis at {url}")
        return url
    url = start_redis(group, free_port(), WORK_DIR / "redis")
    say(f"started Redis at {url}")
    return url


def _s3_endpoint(group: ProcessGroup) -> str:
    endpoint = os.environ.get("YOLOQ_S3_ENDPOINT_URL")
    if endpoint:
        say(f"using S3 at {endpoint}")
        return endpoint
    # moto takes any credentials; boto3 refuses to sign without some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    endpoint = start_s3(group, free_port())
    say(f"started an S3-compatible server (moto) at {endpoint}")
    return endpoint


def _print_results(items: list[ResultItem], names: list[str]) -> None:
    for item in items:
        name = names[item.index]
        if item.status == "error" and item.error:
            print(f"  [{item.index}] {name}: ERROR {item.error.code}: {item.error.message}")
            continue
        found = len(detections_of(item))
        print(f"  [{item.index}] {name} ({item.width}x{item.height}): {found} found")
        for d in detections_of(item):
            box = ", ".join(f"{v:.0f}" for v in d.box)
            print(f"      {d.class_name:<10} {d.confidence:.2f}  [{box}]")


def _print_score(items: list[ResultItem], images: list[Path]) -> None:
    """Precision and recall against the labels beside the images, when there are any."""
    total = Score()
    labelled = 0
    for item, image in zip(items, images, strict=True):
        label = image.parent / "labels" / f"{image.stem}.txt"
        if item.status != "ok" or not label.is_file() or not item.width or not item.height:
            continue
        labelled += 1
        total.add(score(detections_of(item), read_yolo_labels(label, item.width, item.height)))
    if labelled:
        say(
            f"against the labels of {labelled} images (IoU >= 0.5): "
            f"precision {total.precision:.3f}, recall {total.recall:.3f} "
            f"({total.true_positives} found, {total.false_positives} wrong, "
            f"{total.false_negatives} missed)"
        )


def summary(item: ResultItem) -> str:
    """One line of what an item holds, whatever its task."""
    lineage = f"{item.model}:{item.version} sha256 {(item.sha256 or '')[:12]}"
    if isinstance(item, ClassifyItem):
        best = ", ".join(f"{c.class_name} {c.confidence:.2f}" for c in item.classes[:3])
        return f"{item.task} [{lineage}]: top classes {best}"
    found = detections_of(item)
    if not found:
        return f"{item.task} [{lineage}]: nothing found"
    first = found[0]
    what = f"{first.class_name} {first.confidence:.2f}"
    if isinstance(first, SegmentDetection):
        holes = sum(len(part.holes) for part in first.mask.parts)
        what += (
            f", mask of {len(first.mask.parts)} part(s), {holes} hole(s), "
            f"{first.mask.area:.0f} px, outline of {len(first.mask.parts[0].outline)} points"
        )
    elif isinstance(first, PoseDetection):
        points = ", ".join(f"{k.name} ({k.x:.0f}, {k.y:.0f})" for k in first.keypoints)
        what += f", keypoints {points}"
    elif isinstance(first, ObbDetection):
        box = first.rotated_box
        what += (
            f", rotated box centre ({box.cx:.0f}, {box.cy:.0f}) {box.width:.0f}x"
            f"{box.height:.0f} at {box.angle:.2f} rad"
        )
    else:
        what += f", box [{', '.join(f'{v:.0f}' for v in first.box)}]"
    return f"{item.task} [{lineage}]: {len(found)} found; first: {what}"


def _push_task_models(env: dict[str, str]) -> None:
    for name, file in TASK_MODELS.items():
        done = subprocess.run(
            yoloq_argv("models", "push", str(FIXTURES / file), "--name", name),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"could not push {file}: {done.stderr.strip()}")
        say(f"pushed {file} as {done.stdout.strip()}")


def _run_every_task(client: Client, refs: list[ImageRef]) -> bool:
    """One job per task, on the same images; a line per result kind."""
    ok = True
    for name in TASK_MODELS:
        accepted = client.submit(refs, model=name)
        job = client.wait(accepted.id, timeout_s=600)
        items = list(client.results(accepted.id))
        say(f"{name}: job {job.id} {job.status.value}, {job.done} images")
        print(f"  {summary(items[0])}")
        ok = ok and job.status == JobStatus.SUCCEEDED
    return ok


def run_demo(
    stay: bool = True, api_port: int = 8000, images_dir: Path = SAMPLES, tasks: bool = False
) -> int:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    model = os.environ.get("YOLOQ_MODEL") or str(FIXTURE_MODEL)
    if tasks:
        model = ",".join(TASK_MODELS)
    samples = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in keys.IMAGE_SUFFIXES)
    if not samples:
        say(f"no images in {images_dir}")
        return 2
    with ProcessGroup(WORK_DIR / "logs") as group:
        env = {
            "YOLOQ_REDIS_URL": _redis_url(group),
            "YOLOQ_S3_ENDPOINT_URL": _s3_endpoint(group),
            "YOLOQ_MODEL": model,
            "YOLOQ_KEY_PREFIX": os.environ.get("YOLOQ_KEY_PREFIX", "yoloq-demo"),
            # A local demo on loopback; the API logs a loud warning about it.
            "YOLOQ_AUTH_DISABLED": "true",
        }
        os.environ.update(env)
        from yoloq.settings import Settings

        settings = Settings()
        store = ObjectStore.from_settings(settings)
        for bucket in (settings.results_bucket, settings.uploads_bucket):
            store.ensure_bucket(bucket)
        if tasks:
            _push_task_models(env)
            env["YOLOQ_DEFAULT_MODEL"] = "shapes"

        say(f"starting a worker with {model} (logs in {group.log_dir})")
        worker = group.start("worker", yoloq_argv("worker", "--device", "auto"), env)
        port = api_port if not port_open("127.0.0.1", api_port) else free_port()
        url = f"http://127.0.0.1:{port}"
        api = group.start("api", yoloq_argv("api", "--port", str(port)), env)
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        say(f"API up at {url}; waiting for the worker to load and warm its model")
        with Client(url) as client:
            group.wait_ready(worker, client.ready, timeout_s=300)

            refs = [client.upload(path) for path in samples]
            say(f"uploaded {len(refs)} sample images to s3://{settings.uploads_bucket}/")
            accepted = client.submit(refs)
            say(f"submitted job {accepted.id}")
            started = time.monotonic()
            job: JobPublic = client.wait(accepted.id, timeout_s=600, on_progress=JobProgress())
            elapsed = time.monotonic() - started
            items = list(client.results(accepted.id))
            every_task_ok = _run_every_task(client, refs[:4]) if tasks else True

        say(f"job {job.id} {job.status.value} in {elapsed:.1f}s: {job.done} images")
        _print_results(items, [path.name for path in samples])
        _print_score(items, samples)
        print()
        say(f"API docs:    {url}/docs")
        say(f"job:         {url}/v1/jobs/{job.id}")
        say(f"results:     {url}/v1/jobs/{job.id}/results")
        say(f"in S3:       s3://{job.results.bucket}/{job.results.key}")
        say(f"S3 endpoint: {settings.s3_endpoint_url}")
        if stay:
            say("running; press Ctrl-C to stop everything the demo started")
            with contextlib.suppress(KeyboardInterrupt):
                wait_until(lambda: not (api.alive() and worker.alive()), float("inf"), "exit", 1.0)
            say("stopping")
    return 0 if job.status == JobStatus.SUCCEEDED and every_task_ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
