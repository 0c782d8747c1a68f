"""Redis behind Sentinel: a master, its replica and three Sentinels (real redis-server
processes on loopback). The API and a worker reach Redis only through
``redis+sentinel://``; the master is killed in the middle of a job, a Sentinel promotes
the replica, and every job still ends with each image exactly once: those the API accepted
just before, and one whose chunk messages were lost with the master (a worker sends them
again as it reconnects)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import API_KEY
from tests.jobs import check_ledger, create_job, put_images
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import (
    Process,
    ProcessGroup,
    free_port,
    port_open,
    redis_server_binary,
    wait_until,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore
from yoloq.schemas import InferenceParams, JobPublic, JobStatus

MASTER = "yoloq"


@dataclass
class SentinelSet:
    group: ProcessGroup
    work: Path
    master: Process
    master_port: int
    replica_port: int
    sentinel_ports: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def bring_back_the_old_master(self) -> None:
        """Restarted, the old master is made a replica of the new one by the Sentinels."""
        argv = [redis_server_binary(), *server_args(self.master_port, self.work / "master")]
        self.group.start("redis-old-master", argv)
        old_master = redis.Redis(port=self.master_port, decode_responses=True)

        def following() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                state = old_master.info("replication")
                return state["role"] == "slave" and state.get("master_link_status") == "up"
            return False

        wait_until(following, 60, "the old master to follow the new one", interval_s=0.2)

    def master_port_now(self) -> int:
        sentinel = redis.Redis(port=self.sentinel_ports[0], decode_responses=True)
        _, port = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return int(port)


def poll_answers(url: str, until_ok_after_s: float) -> list[tuple[float, int]]:
    """Status codes of GET ``url`` every 50 ms, until it has answered 200 for
    ``until_ok_after_s`` in a row after some other answer (or 30 s pass)."""
    answers: list[tuple[float, int]] = []
    deadline = time.monotonic() + 30
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as http:
        while time.monotonic() < deadline:
            answers.append((time.monotonic(), http.get(url).status_code))
            bad = [at for at, code in answers if code != 200]
            if bad and answers[-1][0] - max(bad) >= until_ok_after_s:
                break
            time.sleep(0.05)
    return answers


def server_args(port: int, work: Path) -> list[str]:
    # --dir: a replica's full sync writes an RDB file even with saving off.
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip


def start_sentinel_set(group: ProcessGroup, work: Path) -> SentinelSet:
    server = redis_server_binary()
    for folder in ("master", "replica"):
        (work / folder).mkdir()
    master_port, replica_port = free_port(), free_port()
    master = group.start("redis-master", [server, *server_args(master_port, work / "master")])
    replica_of = ["--replicaof", "127.0.0.1", str(master_port)]
    replica = server_args(replica_port, work / "replica")
    group.start("redis-replica", [server, *replica, *replica_of])
    sentinel_ports = [free_port() for _ in range(3)]
    for port in sentinel_ports:
        # Sentinel rewrites its config file as it learns: one of its own, writable.
        config = work / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {work}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        group.start(f"sentinel-{port}", [server, str(config), "--sentinel"])
    for port in [master_port, replica_port, *sentinel_ports]:
        wait_until(lambda p=port: port_open("127.0.0.1", p), 15, f"redis on {port}")  # type: ignore[misc]
    wait_until(
        lambda: redis.Redis(port=replica_port).info("replication")["master_link_status"] == "up",
        15,
        "the replica to sync",
    )
    return SentinelSet(group, work, master, master_port, replica_port, sentinel_ports)


@pytest.fixture
def sentinel_stack(
    stack_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[SentinelSet, dict[str, str], str]]:
    with ProcessGroup(tmp_path / "logs") as group:
        redis_set = start_sentinel_set(group, tmp_path)
        env = {
            **stack_env,
            "YOLOQ_REDIS_URL": redis_set.url,
            "YOLOQ_KEY_PREFIX": f"yoloq-sentinel-{uuid.uuid4().hex[:8]}",
            "YOLOQ_METRICS_PORT": "0",
            # A 202 means the replica has the job: the failover below cannot forget it.
            "YOLOQ_REDIS_REPLICAS_TO_ACK": "1",
            # Far past the test: a chunk lost as the master dies comes back only by the
            # sweep a worker makes when it reconnects.
            "YOLOQ_LOST_CHUNK_AFTER_S": "600",
        }
        jobs = JobStore.from_url(redis_set.url, env["YOLOQ_KEY_PREFIX"])
        worker = group.start("worker", yoloq_argv("worker", "--device", "cpu"), env)
        group.wait_ready(worker, lambda: any(w.warmed for w in jobs.live_workers(30)), 180)
        port = free_port()
        api = group.start("api", yoloq_argv("api", "--port", str(port)), env)
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        yield redis_set, env, f"http://127.0.0.1:{port}"


def wait_supervised(
    client: Client, job_id: str, timeout_s: float, supervise: Callable[[], None]
) -> JobPublic:
    def final() -> bool:
        supervise()
        return client.job(job_id).status.is_final

    wait_until(final, timeout_s, f"job {job_id} to finish", interval_s=0.5)
    return client.job(job_id)


def test_jobs_survive_the_redis_master_failing_over(
    sentinel_stack: tuple[SentinelSet, dict[str, str], str], object_store: ObjectStore
) -> None:
    redis_set, env, api_url = sentinel_stack
    jobs = JobStore.from_url(redis_set.url, env["YOLOQ_KEY_PREFIX"])
    restarts = 0

    def supervise() -> None:
        # kombu can stop a worker as its broker connection breaks (exit status 1); like
        # compose's `restart: unless-stopped`, start it again.
        nonlocal restarts
        worker = [p for p in redis_set.group.processes if p.name.startswith("worker")][-1]
        if worker.popen.poll() is not None:
            assert worker.popen.returncode == 1, worker.popen.returncode
            restarts += 1
            argv = yoloq_argv("worker", "--device", "cpu")
            redis_set.group.start(f"worker-restarted-{restarts}", argv, env)

    with Client(api_url, API_KEY, timeout_s=60) as client:
        before = put_images(object_store, 8, "sentinel-before")
        first = client.submit(before)
        assert client.wait(first.id, timeout_s=120).status == JobStatus.SUCCEEDED

        during = put_images(object_store, 48, "sentinel-during")
        second = client.submit(during, InferenceParams(imgsz=640))
        wait_until(lambda: client.job(second.id).done > 0, 60, "the job to start")
        # Accepted a moment before the master dies: only the replica can still have it.
        last_words = put_images(object_store, 8, "sentinel-last")
        last = client.submit(last_words)
        # A job whose chunks the broker lost as the master died: recorded (on the replica
        # too), never queued.
        model = jobs.live_workers(30)[0].models[0].id
        lost_images = put_images(object_store, 8, "sentinel-lost")
        lost_id, _ = create_job(jobs, object_store, model, lost_images, replicas=1)
        redis_set.master.popen.kill()
        killed = time.monotonic()
        answers = poll_answers(f"{api_url}/v1/jobs/{second.id}", until_ok_after_s=1.5)
        wait_until(
            lambda: redis_set.master_port_now() == redis_set.replica_port,
            30,
            "a Sentinel to promote the replica",
        )
        # The API answers 503 while there is no master, never anything else, and comes
        # back by itself: the same process, no restart.
        codes = {code for _, code in answers}
        assert codes <= {200, 503} and answers[-1][1] == 200, answers
        unavailable = [at for at, code in answers if code == 503]
        window = (max(unavailable) - killed) if unavailable else 0.0
        print(f"\nAPI unavailable for {window:.1f} s after the master was killed")
        # Well inside YOLOQ_LOST_CHUNK_AFTER_S: the lost job comes back by the sweep of a
        # worker that reconnected, or that was started again.
        for job_id, timeout_s in ((second.id, 240), (last.id, 120), (lost_id, 60)):
            finished = wait_supervised(client, job_id, timeout_s, supervise)
            assert finished.status == JobStatus.SUCCEEDED, finished

        # With one replica required, the new master takes jobs once a replica follows it.
        redis_set.bring_back_the_old_master()
        after = put_images(object_store, 8, "sentinel-after")
        third = client.submit(after)
        assert client.wait(third.id, timeout_s=120).status == JobStatus.SUCCEEDED

    for job_id, images in (
        (first.id, before),
        (second.id, during),
        (last.id, last_words),
        (lost_id, lost_images),
        (third.id, after),
    ):
        assert check_ledger(jobs, object_store, job_id, images) == {"ok": len(images)}
