"""Redis behind Sentinel: a master, its replica and three Sentinels (real redis-server
processes on loopback). The API and a worker reach Redis only through
``redis+sentinel://``; the master is killed in the middle of a job, a Sentinel promotes
the replica, and every job still ends with each image exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import API_KEY
from tests.jobs import check_ledger, put_images
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
from yoloq.schemas import InferenceParams, JobStatus

MASTER = "yoloq"


@dataclass
class SentinelSet:
    master: Process
    master_port: int
    replica_port: int
    sentinel_ports: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def master_port_now(self) -> int:
        sentinel = redis.Redis(port=self.sentinel_ports[0], decode_responses=True)
        _, port = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return int(port)


def start_sentinel_set(group: ProcessGroup, work: Path) -> SentinelSet:
    server = redis_server_binary()
    master_port, replica_port = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    master = group.start("redis-master", [server, "--port", str(master_port), *common])
    group.start(
        "redis-replica",
        [
            server,
            "--port",
            str(replica_port),
            "--replicaof",
            "127.0.0.1",
            str(master_port),
            *common,
        ],
    )
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
    return SentinelSet(master, master_port, replica_port, sentinel_ports)


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
        }
        jobs = JobStore.from_url(redis_set.url, env["YOLOQ_KEY_PREFIX"])
        worker = group.start("worker", yoloq_argv("worker", "--device", "cpu"), env)
        group.wait_ready(worker, lambda: any(w.warmed for w in jobs.live_workers(30)), 180)
        port = free_port()
        api = group.start("api", yoloq_argv("api", "--port", str(port)), env)
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        yield redis_set, env, f"http://127.0.0.1:{port}"


def test_jobs_survive_the_redis_master_failing_over(
    sentinel_stack: tuple[SentinelSet, dict[str, str], str], object_store: ObjectStore
) -> None:
    redis_set, env, api_url = sentinel_stack
    jobs = JobStore.from_url(redis_set.url, env["YOLOQ_KEY_PREFIX"])
    with Client(api_url, API_KEY, timeout_s=60) as client:
        before = put_images(object_store, 8, "sentinel-before")
        first = client.submit(before)
        assert client.wait(first.id, timeout_s=120).status == JobStatus.SUCCEEDED

        during = put_images(object_store, 48, "sentinel-during")
        second = client.submit(during, InferenceParams(imgsz=640))
        wait_until(lambda: client.job(second.id).done > 0, 60, "the job to start")
        redis_set.master.popen.kill()
        wait_until(
            lambda: redis_set.master_port_now() == redis_set.replica_port,
            30,
            "a Sentinel to promote the replica",
        )
        finished = client.wait(second.id, timeout_s=240)
        assert finished.status == JobStatus.SUCCEEDED, finished

        after = put_images(object_store, 8, "sentinel-after")
        third = client.submit(after)
        assert client.wait(third.id, timeout_s=120).status == JobStatus.SUCCEEDED

    for job, images in ((first, before), (second, during), (third, after)):
        assert check_ledger(jobs, object_store, job.id, images) == {"ok": len(images)}
