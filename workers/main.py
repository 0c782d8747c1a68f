"""Starting a worker: pin the device, load and warm the model, then consume."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from workers.device import Device, parse_device, pin_device

if TYPE_CHECKING:
    from workers.model import Detector, WarmUp

T = TypeVar("T")

log = logging.getLogger("workers")


def worker_name(name: str | None, device: Device) -> str:
    """The Celery hostname, which the heartbeat also uses: ``--name`` or ``LABEL@%h``.

    ``%h`` (and Celery's other ``%`` abbreviations) are expanded here rather than left to
    Celery, so the heartbeat carries the same name Celery shows. In a container ``%h`` is
    the container's hostname, which makes ``gpu1@%h`` distinct per container and matches
    what ``python -m workers.healthcheck`` looks for by default.
    """
    from celery.utils.nodenames import host_format

    return str(host_format(name or f"{device.label}@%h"))


def staging_limit(max_batch: int) -> int:
    """Images a worker holds decoded ahead of the model: the batch that runs, the next
    one filling, and as many again arriving, so the model never waits on a download."""
    return max(16, 4 * max_batch)


def on_a_passing_thread(work: Callable[[], T]) -> T:
    """Run ``work`` on a thread that ends when it is done.

    Torch work on the CPU must not run on the main thread of a worker: every thread that
    runs torch operations keeps an OpenMP thread team until it exits, and once the
    process holds more OpenMP threads than cores, libgomp stops spinning at barriers and
    sleeps instead. A model loaded and warmed on the main thread and then run on the
    batcher thread took 55 ms per image instead of 34 on an idle 2-core machine: the
    latency of a lone image. Loading on a passing thread leaves the batcher thread's team
    the only one.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="model-load") as pool:
        return pool.submit(work).result()


def load_and_warm(
    weights: Path, device: Device, max_batch: int | None, imgsz: int | None
) -> tuple[Detector, WarmUp]:
    from workers.model import Detector

    detector = Detector(weights, device)
    log.info("model %s (sha256 %s) loaded on %s", weights, detector.sha256[:12], device.requested)
    return detector, detector.warm_up(max_batch=max_batch, imgsz=imgsz)


def run_worker(
    device_name: str = "auto",
    *,
    name: str | None = None,
    concurrency: int | None = None,
    loglevel: str = "INFO",
) -> None:
    # Order matters: the device is pinned before anything imports torch.
    device = parse_device(device_name)
    pin_device(device)

    from workers import metrics
    from workers import runtime as worker_runtime
    from workers.heartbeat import Heartbeat
    from workers.inference import make_batcher
    from workers.inflight import requeue_own_leftovers
    from workers.model import configure_offline, resolve_weights
    from workers.tasks import register_tasks
    from workers.watchdog import Watchdog
    from yoloq import keys
    from yoloq.archive import ResultArchive
    from yoloq.job_store import JobStore
    from yoloq.object_store import ObjectStore
    from yoloq.queue import ChunkQueue, make_celery, queue_for
    from yoloq.settings import Settings

    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if not settings.model:
        raise SystemExit("YOLOQ_MODEL is not set: give a weights path or an s3://bucket/key URI")
    configure_offline(settings.cache_dir / "ultralytics")

    store = ObjectStore.from_settings(settings)
    jobs = JobStore.from_url(settings.redis_url, settings.key_prefix)
    weights = resolve_weights(settings.model, store, settings.cache_dir)
    detector, warm = on_a_passing_thread(
        lambda: load_and_warm(weights, device, settings.max_batch, settings.warmup_imgsz)
    )
    costs = ", ".join(f"{size}: {1000 * s:.1f} ms" for size, s in warm.per_image_s.items())
    log.info(
        "model warmed in %.1fs at imgsz %d; max batch %d%s",
        warm.seconds,
        warm.imgsz,
        warm.max_batch,
        f" (per-image cost by batch size: {costs})" if costs else " (YOLOQ_MAX_BATCH)",
    )
    metrics.MODEL_WARM.set(1)
    metrics.MAX_BATCH.set(warm.max_batch)
    metrics.serve(settings.metrics_port, device.host_index)
    hostname = worker_name(name, device)
    watchdog = Watchdog(settings.chunk_hard_limit_s).start()
    stats = worker_runtime.WorkerStats()
    batcher = make_batcher(
        detector, warm.max_batch, settings.max_delay_ms / 1000, on_batch=stats.count_batch
    ).start()
    runtime = worker_runtime.WorkerRuntime(
        settings=settings,
        jobs=jobs,
        store=store,
        archive=ResultArchive(store, settings.results_bucket),
        detector=detector,
        batcher=batcher,
        io_pool=ThreadPoolExecutor(settings.io_threads, thread_name_prefix="io"),
        staging_slots=threading.BoundedSemaphore(staging_limit(warm.max_batch)),
        stats=stats,
        max_batch=warm.max_batch,
        watchdog=watchdog,
        name=hostname,
    )
    worker_runtime.set_current(runtime)

    app = make_celery(settings)
    register_tasks(app)
    runtime.on_job_finished = lambda job_id: app.send_task(
        keys.WEBHOOK_TASK, args=[job_id], queue=queue_for(settings)
    )
    runtime.requeue = ChunkQueue(app, settings.queue_model_name).send
    requeue_own_leftovers(jobs, runtime.requeue, hostname)
    heartbeat = Heartbeat(runtime, hostname, settings.heartbeat_interval_s)
    heartbeat.start()
    try:
        app.worker_main(
            [
                "worker",
                # Threads, not prefork: no fork after CUDA is initialised, and one model
                # in memory shared by every task.
                "--pool=threads",
                f"--concurrency={concurrency or settings.worker_concurrency}",
                f"--queues={','.join(keys.priority_queues(settings.queue_model_name))}",
                f"--hostname={hostname}",
                f"--loglevel={loglevel}",
                "--task-events",
                "--without-gossip",
                "--without-mingle",
            ]
        )
        # A warm shutdown finished what it ran and handed back what it held to the
        # broker, so nothing of this worker's is in flight any more.
        jobs.clear_inflight(hostname)
    finally:
        heartbeat.stop()
        watchdog.stop()
        batcher.stop()
        runtime.io_pool.shutdown(wait=False, cancel_futures=True)
