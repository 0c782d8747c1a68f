"""Redis restarted under a running job: the API says 503 while it is down and recovers by
itself, workers reconnect (or, if Celery gave up on the broker, exit to be restarted by
their supervisor, as compose and Kubernetes do), and the job completes with every image
counted once."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import API_KEY, WorkerLauncher
from tests.jobs import check_ledger, put_images
from yoloq.job_store import JobStore
from yoloq.local_services import (
    ProcessGroup,
    free_port,
    port_open,
    start_redis,
    wait_until,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore
from yoloq.schemas import JobStatus


def test_jobs_survive_a_redis_restart(
    launcher: WorkerLauncher, object_store: ObjectStore, tmp_path: Path
) -> None:
    group = launcher.group
    port = free_port()
    redis_url = start_redis(group, port, tmp_path / "redis", durable=True)
    prefix = f"restart-{uuid.uuid4().hex[:6]}"
    env = {
        **launcher.env,
        "YOLOQ_REDIS_URL": redis_url,
        "YOLOQ_KEY_PREFIX": prefix,
        "YOLOQ_MODEL_NAME": "restart",
        "YOLOQ_CHUNK_SIZE": "2",
        "YOLOQ_MAX_BATCH": "2",
        "YOLOQ_CHUNK_SOFT_LIMIT_S": "20",
        "YOLOQ_CHUNK_HARD_LIMIT_S": "40",
        "YOLOQ_VISIBILITY_TIMEOUT_S": "60",
    }
    jobs = JobStore.from_url(redis_url, prefix)
    own = WorkerLauncher(group, env, jobs)
    worker = own.start("w@restart", YOLOQ_WORKER_CONCURRENCY="2")

    def supervise() -> None:
        # Celery can lose the broker at a moment kombu does not recover from (its redis
        # transport fails to reconnect with an AttributeError): the worker then stops
        # with status 1. Like compose's `restart: unless-stopped`, start it again.
        nonlocal worker
        if worker.popen.poll() is not None:
            assert worker.popen.returncode == 1, worker.popen.returncode
            worker = own.start("w@restart", YOLOQ_WORKER_CONCURRENCY="2")

    api_port = free_port()
    api = group.start("api-restart", yoloq_argv("api", "--port", str(api_port)), env)
    group.wait_ready(api, lambda: port_open("127.0.0.1", api_port), timeout_s=60)
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    try:
        _restart_redis_under_a_job(http, jobs, group, port, tmp_path, object_store, supervise)
    finally:
        http.close()
        jobs.redis.close()


def _restart_redis_under_a_job(
    http: httpx.Client,
    jobs: JobStore,
    group: ProcessGroup,
    port: int,
    tmp_path: Path,
    object_store: ObjectStore,
    supervise: Callable[[], None],
) -> None:

    images = put_images(object_store, 40, prefix="restart")
    body = {"images": [ref.model_dump() for ref in images]}
    job_id = http.post("/v1/jobs", json=body).json()["id"]
    wait_until(lambda: http.get(f"/v1/jobs/{job_id}").json()["done"] >= 4, 60, "some progress")

    redis_process = next(p for p in group.processes if p.name == f"redis-{port}")
    redis_process.popen.send_signal(signal.SIGKILL)
    redis_process.popen.wait(10)

    down = http.get(f"/v1/jobs/{job_id}")
    assert down.status_code == 503
    assert "Redis" in down.json()["detail"] and down.headers["Retry-After"]
    refused = http.post("/v1/jobs", json={"images": body["images"][:1]})
    assert refused.status_code == 503, refused.text
    ready = http.get("/readyz")
    assert ready.status_code == 503 and "redis" in ready.json()["reason"]

    start_redis(group, port, tmp_path / "redis", durable=True)

    # The same API process answers again, and the job (queued, running and done chunks
    # alike) completes.
    def finished() -> bool:
        supervise()
        response = http.get(f"/v1/jobs/{job_id}")
        return response.status_code == 200 and JobStatus(response.json()["status"]).is_final

    wait_until(finished, 120, "the job to finish after the restart")
    assert check_ledger(jobs, object_store, job_id, images) == {"ok": 40}
    assert jobs.queued_images_for("restart") == 0

    # The worker reconnected: it beats again and takes new work.
    wait_until(lambda: bool(jobs.live_workers(5)), 30, "the worker's heartbeat")
    after = http.post("/v1/jobs", json={"images": body["images"][:3]}).json()["id"]
    wait_until(
        lambda: http.get(f"/v1/jobs/{after}").json()["status"] == "succeeded", 60, "a new job"
    )
    assert http.get("/readyz").status_code == 200
