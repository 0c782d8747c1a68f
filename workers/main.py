"""Starting a worker: pin the device, load and warm the model, then consume."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from workers.device import Device, parse_device, pin_device

if TYPE_CHECKING:
    from workers.memory import MemoryBudget
    from workers.serving import ModelSource, ServedModel

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


@dataclass
class ExitStatus:
    """The status Celery's worker stopped with (``app.worker_main`` drops it)."""

    exitcode: int = 0

    @classmethod
    def of_celery(cls) -> ExitStatus:
        from celery.signals import worker_shutdown

        status = cls()

        def remember(sender: Any, **_: Any) -> None:
            status.exitcode = int(sender.exitcode or 0)

        worker_shutdown.connect(remember, weak=False)
        return status


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


def load_all(
    sources: list[ModelSource],
    device: Device,
    max_batch: int | None,
    imgsz: int | None,
    budget: MemoryBudget,
    openvino_precision: str = "auto",
) -> dict[str, ServedModel]:
    """Load and warm every version, one after another, each before the worker takes work."""
    from workers.serving import load_served

    served = {}
    for source in sources:
        served[source.id] = on_a_passing_thread(
            lambda source=source: load_served(  # type: ignore[misc]
                source, device, max_batch, imgsz, budget, openvino_precision
            )
        )
    return served


def run_worker(
    device_name: str = "auto",
    *,
    models: list[str] | None = None,
    name: str | None = None,
    concurrency: int | None = None,
    loglevel: str = "INFO",
) -> None:
    started_at = time.time()
    # Order matters: the device is pinned before anything imports torch.
    device = parse_device(device_name)
    pin_device(device)

    from workers import metrics
    from workers import runtime as worker_runtime
    from workers.following import AliasFollower, follows_an_alias
    from workers.heartbeat import Heartbeat
    from workers.inference import make_batcher
    from workers.inflight import requeue_own_leftovers
    from workers.memory import MemoryBudget, ModelDoesNotFit
    from workers.model import configure_offline
    from workers.reconnect import SweepAfterReconnect, sweep_soon
    from workers.serving import load_served, model_specs, resolve_sources
    from workers.tasks import register_tasks
    from workers.watchdog import Watchdog
    from yoloq import keys
    from yoloq.archive import ResultArchive
    from yoloq.job_store import JobStore
    from yoloq.object_store import ObjectStore
    from yoloq.queue import ChunkQueue, make_celery, queue_for
    from yoloq.registry import ModelRegistry
    from yoloq.settings import Settings

    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    spec = ",".join(models) if models else settings.model
    if not spec:
        raise SystemExit(
            "no model to serve: pass --model (a registry reference such as parts-seg@production, "
            "or a weights file) or set YOLOQ_MODEL"
        )
    configure_offline(settings.cache_dir / "ultralytics")

    store = ObjectStore.from_settings(settings)
    jobs = JobStore.from_url(settings.redis_url, settings.key_prefix)
    registry = ModelRegistry(store, settings.models_bucket)
    try:
        specs = model_specs(spec)
        sources = resolve_sources(specs, settings, store, registry)
    except ValueError as error:  # CatalogError included: an unknown model, version or alias
        raise SystemExit(f"cannot serve {spec!r}: {error}") from error
    budget = MemoryBudget.for_device(device, settings.model_memory_mb)
    try:
        served = load_all(
            sources,
            device,
            settings.max_batch,
            settings.warmup_imgsz,
            budget,
            settings.openvino_precision,
        )
    except ModelDoesNotFit as error:
        raise SystemExit(f"cannot serve {spec!r}: {error}") from error
    metrics.serve(settings.metrics_port, device.host_index)
    hostname = worker_name(name, device)
    watchdog = Watchdog(settings.chunk_hard_limit_s).start()
    stats = worker_runtime.WorkerStats()
    batcher = make_batcher(settings.max_delay_ms / 1000, on_batch=stats.count_batch).start()
    largest_batch = max(model.max_batch for model in served.values())
    concurrency = concurrency or settings.worker_concurrency
    runtime = worker_runtime.WorkerRuntime(
        settings=settings,
        jobs=jobs,
        store=store,
        archive=ResultArchive(store, settings.results_bucket),
        device=device,
        models=served,
        batcher=batcher,
        io_pool=ThreadPoolExecutor(settings.io_threads, thread_name_prefix="io"),
        staging_slots=threading.BoundedSemaphore(staging_limit(largest_batch)),
        stats=stats,
        watchdog=watchdog,
        name=hostname,
        concurrency=concurrency,
    )
    worker_runtime.set_current(runtime)

    app = make_celery(settings)
    register_tasks(app)
    app.steps["consumer"].add(SweepAfterReconnect)
    runtime.on_job_finished = lambda job_id: app.send_task(
        keys.WEBHOOK_TASK, args=[job_id], queue=queue_for(settings)
    )
    # By each chunk's own model (ChunkQueue.send), whichever this worker serves.
    sender = ChunkQueue(app, next(iter(served)))
    runtime.requeue = sender.send
    runtime.send_plan = sender.send_plan
    requeue_own_leftovers(jobs, runtime.inputs, runtime.requeue, hostname)
    # This worker's last run may have stopped with the broker connection, as kombu can
    # stop a worker then; what it was taking may be lost. Not newer jobs: a failure
    # before this process started cannot have lost them.
    sweep_soon(started_at, "start")
    heartbeat = Heartbeat(runtime, hostname, settings.heartbeat_interval_s)
    heartbeat.start()
    follower = None
    if follows_an_alias(specs):
        follower = AliasFollower(
            runtime,
            specs,
            ModelRegistry(store, settings.models_bucket),
            app,
            lambda source: on_a_passing_thread(
                lambda: load_served(
                    source,
                    device,
                    settings.max_batch,
                    settings.warmup_imgsz,
                    budget,
                    settings.openvino_precision,
                )
            ),
            budget,
        ).start()
    stopped = ExitStatus.of_celery()
    try:
        app.worker_main(
            [
                "worker",
                # Threads, not prefork: no fork after CUDA is initialised, and one model
                # in memory shared by every task.
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={','.join(q for m in served for q in keys.priority_queues(m))}",
                f"--hostname={hostname}",
                f"--loglevel={loglevel}",
                "--task-events",
                "--without-gossip",
                "--without-mingle",
            ]
        )
        if stopped.exitcode:
            # Celery stopped on an error (kombu's, as a broker connection broke): exit
            # non-zero, which worker_main does not, so that the supervisor starts the
            # worker again; the in-flight list stays for that run to requeue.
            raise SystemExit(stopped.exitcode)
        # A warm shutdown finished what it ran and handed back what it held to the
        # broker, so nothing of this worker's is in flight any more.
        jobs.clear_inflight(hostname)
    finally:
        if follower is not None:
            follower.stop()
        heartbeat.stop()
        watchdog.stop()
        batcher.stop()
        runtime.io_pool.shutdown(wait=False, cancel_futures=True)
