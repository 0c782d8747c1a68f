"""The soak: jobs keep arriving while workers are killed and restarted at random and Redis
is killed and restarted once; afterwards every submitted image must have exactly one
result. Slow, so left out of the default suite:

    make soak                       # 10 minutes
    YOLOQ_SOAK_MINUTES=2 make soak  # a shorter run

Its last line is the ledger: kills, jobs, images, lost, duplicated.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, WorkerLauncher
from tests.jobs import SOAK_SETTINGS, Tally, put_images
from yoloq.job_store import JobStore
from yoloq.local_services import (
    Process,
    ProcessGroup,
    free_port,
    port_open,
    start_redis,
    wait_until,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef

MINUTES = float(os.environ.get("YOLOQ_SOAK_MINUTES", "10"))
WORKERS = ("a@soak", "b@soak")


@dataclass
class Ledger:
    submitted: dict[str, list[ImageRef]] = field(default_factory=dict)
    refused: int = 0
    kills: int = 0
    redis_restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RedisServer:
    """The soak's own Redis, durable, so it can be killed and started again."""

    group: ProcessGroup
    port: int
    data_dir: Path
    process: Process | None = None

    def start(self) -> str:
        url = start_redis(self.group, self.port, self.data_dir, durable=True)
        self.process = self.group.processes[-1]
        return url

    def kill(self) -> None:
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(10)


def _submit_jobs(
    http: httpx.Client, pool: list[ImageRef], ledger: Ledger, stop: threading.Event
) -> None:
    rng = random.Random(1)
    while not stop.wait(rng.uniform(0.5, 2.5)):
        images = rng.sample(pool, rng.randint(1, 24))
        try:
            response = http.post("/v1/jobs", json={"images": [r.model_dump() for r in images]})
        except httpx.HTTPError:
            response = None
        with ledger.lock:
            if response is not None and response.status_code == 202:
                ledger.submitted[response.json()["id"]] = images
            else:  # refused (Redis down): the client knows, and nothing was taken
                ledger.refused += 1


def _chaos(
    launcher: WorkerLauncher,
    workers: dict[str, Process],
    redis: RedisServer,
    env: dict[str, str],
    ledger: Ledger,
    stop: threading.Event,
    redis_at: float,
) -> None:
    rng = random.Random(2)
    while not stop.wait(rng.uniform(8, 20)):
        if not ledger.redis_restarts and time.monotonic() >= redis_at:
            redis.kill()
            time.sleep(rng.uniform(1, 5))
            redis.start()
            ledger.redis_restarts += 1
            continue
        name = rng.choice(WORKERS)
        workers[name].popen.send_signal(signal.SIGKILL)
        workers[name].popen.wait(10)
        ledger.kills += 1
        time.sleep(rng.choice([0, 0, 2, 8]))  # sometimes back at once, sometimes not
        workers[name] = launcher.start(name, **env)


@pytest.mark.slow
@pytest.mark.timeout(int(MINUTES * 60) + 900)
def test_soak(launcher: WorkerLauncher, object_store: ObjectStore, tmp_path: Path) -> None:
    group = launcher.group
    redis = RedisServer(group, free_port(), tmp_path / "redis")
    redis_url = redis.start()
    prefix = f"soak-{uuid.uuid4().hex[:6]}"
    env = {
        "YOLOQ_REDIS_URL": redis_url,
        "YOLOQ_KEY_PREFIX": prefix,
        "YOLOQ_MODEL_NAME": "soak",
        "YOLOQ_CHUNK_SIZE": "4",
        "YOLOQ_MAX_BATCH": "4",
        **SOAK_SETTINGS,
    }
    jobs = JobStore.from_url(redis_url, prefix)
    own = WorkerLauncher(group, {**launcher.env, **env}, jobs)
    workers = {name: own.start(name) for name in WORKERS}
    api_port = free_port()
    api = group.start("api-soak", yoloq_argv("api", "--port", str(api_port)), own.env)
    group.wait_ready(api, lambda: port_open("127.0.0.1", api_port), timeout_s=60)
    pool = put_images(object_store, 64, prefix="soak")

    ledger = Ledger()
    stop = threading.Event()
    started = time.monotonic()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    ) as http:
        threads = [
            threading.Thread(target=_submit_jobs, args=(http, pool, ledger, stop)),
            threading.Thread(
                target=_chaos,
                args=(own, workers, redis, env, ledger, stop, started + MINUTES * 30),
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            stop.wait(MINUTES * 60)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        for name in WORKERS:  # the last kill may have left one down
            if not workers[name].alive():
                workers[name] = own.start(name)

        def all_final() -> bool:
            return all(
                (record := jobs.get(job_id)) is not None and record.public.status.is_final
                for job_id in ledger.submitted
            )

        wait_until(all_final, 600, "every submitted job to finish", interval_s=2)
        minutes = (time.monotonic() - started) / 60

    tally = Tally()
    for job_id, refs in ledger.submitted.items():
        tally.add(jobs, object_store, job_id, len(refs))
    resent = sum(
        log.read_text(errors="replace").count("lost by the broker")
        for log in group.log_dir.glob("worker-*.log")
    )
    summary = (
        f"soak: minutes={minutes:.1f} kills={ledger.kills} "
        f"redis_restarts={ledger.redis_restarts} jobs={tally.jobs} "
        f"images={tally.images} lost={tally.lost} duplicated={tally.duplicated} "
        f"refused_while_down={ledger.refused} outcomes={dict(tally.outcomes)} "
        f"dead_letters={jobs.dead_letter_count()} lost_by_broker_and_resent={resent}"
    )
    print(summary)
    (Path(os.environ.get("YOLOQ_SOAK_REPORT", tmp_path / "soak.txt"))).write_text(summary + "\n")
    jobs.redis.close()
    assert ledger.kills >= 1 and ledger.redis_restarts == 1
    assert (tally.lost, tally.duplicated) == (0, 0), summary
    assert tally.outcomes == {"ok": tally.images}, summary
