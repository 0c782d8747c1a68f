"""yoloq deployed on the test hosts (tests/cluster/hosts.py): the S3 server and the API on
the hub, a worker per worker host, and Redis either alone on the hub or as a Sentinel set
(a master, a replica and three Sentinels, spread over hosts that are never cut off).
The test process drives it from outside; everything that talks to yoloq runs on the
client host (tests/cluster/client.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.hosts import Cluster, Host, can_create_namespaces, cluster
from tests.conftest import API_KEY, API_KEYS, FIXTURES
from yoloq.local_services import Process, ProcessGroup, redis_server_binary, wait_until

REDIS_PORT, SENTINEL_PORT, S3_PORT, API_PORT = 6379, 26379, 9000, 8000
MASTER = "yoloq"
HEARTBEAT_S = 1.0
"""A worker's heartbeat expires after three missed beats: 3 s here."""


SKIP_HOSTS_ENV = "YOLOQ_SKIP_HOST_TESTS"
"""Set to 1 to leave the many-host tests out where namespaces cannot be made (not root)."""


def require_namespaces() -> None:
    why_not = can_create_namespaces()
    if not why_not:
        return
    # Only a person may leave these out, by saying so: a suite (CI included) that cannot
    # make namespaces fails rather than going green without the many-host path.
    if os.geteuid() != 0 and os.environ.get(SKIP_HOSTS_ENV) == "1":
        pytest.skip(f"{why_not} ({SKIP_HOSTS_ENV}=1)")
    pytest.fail(f"{why_not}: run as root, or set {SKIP_HOSTS_ENV}=1 to leave these tests out")


def require_iptables() -> None:
    if not shutil.which("iptables"):
        pytest.fail("no iptables to drop packets with: apt-get install iptables")


def cut_off(host: Host, how: str, cut: bool) -> None:
    if how == "unplugged":  # every call fails at once: the network is unreachable
        host.link(up=not cut)
    else:  # every packet lost: calls hang, and TCP delivers them late once healed
        host.drop_packets(1.0 if cut else 0.0)


@dataclass
class RedisSet:
    """Redis servers by host role, and the URL every yoloq process is given."""

    url: str
    servers: dict[str, Process] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Deployment:
    hosts: Cluster
    group: ProcessGroup
    env: dict[str, str]
    work: Path
    redis: RedisSet
    workers: dict[str, Process] = field(default_factory=dict)

    def client(self, *args: str, timeout_s: float = 120) -> Any:
        """A command of tests/cluster/client.py, run on the client host."""
        argv = self.hosts["client"].argv(sys.executable, "-m", "tests.cluster.client", *args)
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert result.returncode == 0, f"client {args[0]} failed:\n{result.stderr[-3000:]}"
        return json.loads(result.stdout)

    def start_worker(self, role: str, **settings: str) -> Process:
        host = self.hosts[role]
        argv = host.argv(
            sys.executable, "-m", "yoloq", "worker", "--device", "cpu", "--name", f"cpu@{role}"
        )
        env = {**self.env, "YOLOQ_CACHE_DIR": str(self.work / role / "cache"), **settings}
        process = self.group.start(f"worker-{role}-{time.monotonic_ns()}", argv, env)
        self.workers[role] = process
        self.group.wait_ready(process, lambda: self.warm(role), timeout_s=240)
        return process

    def stop_worker(self, role: str) -> None:
        process = self.workers.pop(role)
        process.stop(timeout_s=60)
        self.group.processes.remove(process)
        # Its last heartbeat lives on for up to three beats: gone, a new one means warm.
        wait_until(lambda: not self.warm(role), 30, f"{role}'s heartbeat to go", interval_s=0.5)

    def delay(self, role: str, port: int, upstream: str, delay_ms: float) -> None:
        """A delaying proxy on the host, at 127.0.0.1:port, in front of ``upstream``."""
        argv = self.hosts[role].argv(
            sys.executable, "-m", "tests.cluster.delay_proxy", str(port), upstream, str(delay_ms)
        )
        self.group.start(f"delay-{role}-{port}", argv, self.env)

    def images_per_s(self, jobs: int, images: int) -> float:
        """Submitted from the client host to the last job's end."""
        started = time.monotonic()
        submitted = self.submit(jobs, images)
        self.wait_done(submitted, timeout_s=280)
        rate = jobs * images / (time.monotonic() - started)
        self.check_ledger(submitted, f"rate-{started}")
        return rate

    def warm(self, role: str) -> bool:
        return f"cpu@{role}" in self.client("state")["workers"]

    def submit(self, jobs: int, images: int, imgsz: int | None = None) -> dict[str, list[str]]:
        sizes = [str(imgsz)] if imgsz else []
        submitted: dict[str, list[str]] = self.client("submit", str(jobs), str(images), *sizes)
        return submitted

    def state(self, submitted: dict[str, list[str]]) -> dict[str, Any]:
        found: dict[str, Any] = self.client("state", *submitted)
        return found

    def wait_done(self, submitted: dict[str, list[str]], timeout_s: float) -> None:
        def done() -> bool:
            jobs = self.state(submitted)["jobs"]
            return all(job["status"] in ("succeeded", "partial") for job in jobs.values())

        wait_until(done, timeout_s, "the jobs to finish", interval_s=0.5)

    def check_ledger(self, submitted: dict[str, list[str]], name: str) -> dict[str, Any]:
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(submitted))
        found: dict[str, Any] = self.client("ledger", str(path))
        assert found["items"] == {"ok": sum(len(keys) for keys in submitted.values())}, found
        assert not any(found["queued"].values()), f"images still queued: {found['queued']}"
        return found

    def redis_master(self) -> str:
        """The host role whose Redis the Sentinels name as master now."""
        address = self.client("master", timeout_s=30)["address"]
        return next(role for role, host in self.hosts.hosts.items() if host.address == address)

    def restart_redis(self, role: str, replica_of: str) -> None:
        """The killed server back, as a replica of the new master: it never serves as a
        master again with the empty dataset it starts with."""
        master = self.hosts[replica_of].address
        argv = [*self.redis.argv[role], "--replicaof", master, str(REDIS_PORT)]
        self.redis.servers[role] = self.group.start(f"redis-{role}-{time.monotonic_ns()}", argv)


def redis_argv(host: Host, work: Path) -> list[str]:
    # --dir: a replica's full sync writes an RDB file even with saving off.
    data = work / f"redis-{host.role}"
    data.mkdir(exist_ok=True)
    return host.argv(
        redis_server_binary(),
        "--bind", host.address, "--port", str(REDIS_PORT), "--dir", str(data),
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
    )  # fmt: skip


def start_sentinel_set(
    group: ProcessGroup, hosts: Cluster, work: Path, servers: list[str], sentinels: list[str]
) -> RedisSet:
    """A master on ``servers[0]``, replicas on the rest, a Sentinel on each of
    ``sentinels``; a failover is declared after 1 s without the master."""
    master = hosts[servers[0]].address
    redis_set = RedisSet(
        url="redis+sentinel://"
        + ",".join(f"{hosts[role].address}:{SENTINEL_PORT}" for role in sentinels)
        + f"/{MASTER}/0"
    )
    for role in servers:
        argv = redis_argv(hosts[role], work)
        redis_set.argv[role] = argv
        follow = ["--replicaof", master, str(REDIS_PORT)] if role != servers[0] else []
        redis_set.servers[role] = group.start(f"redis-{role}", [*argv, *follow])
    for role in sentinels:
        # Sentinel rewrites its config file as it learns: one of its own, writable.
        config = work / f"sentinel-{role}.conf"
        config.write_text(
            f"port {SENTINEL_PORT}\nbind {hosts[role].address}\ndir {work}\n"
            f"sentinel monitor {MASTER} {master} {REDIS_PORT} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        argv = hosts[role].argv(redis_server_binary(), str(config), "--sentinel")
        group.start(f"sentinel-{role}", argv)
    return redis_set


def start_one_redis(group: ProcessGroup, hub: Host, work: Path) -> RedisSet:
    argv = redis_argv(hub, work)
    redis_set = RedisSet(f"redis://{hub.address}:{REDIS_PORT}/0", argv={hub.role: argv})
    redis_set.servers[hub.role] = group.start("redis-hub", argv)
    return redis_set


def cluster_env(hub: str, redis_url: str) -> dict[str, str]:
    return {
        "YOLOQ_REDIS_URL": redis_url,
        "YOLOQ_S3_ENDPOINT_URL": f"http://{hub}:{S3_PORT}",
        "YOLOQ_INPUT_BUCKETS": "images",
        "YOLOQ_MODEL": str(FIXTURES / "shapes_yolov8n.pt"),
        "YOLOQ_API_KEYS": json.dumps(API_KEYS),
        "YOLOQ_CHUNK_SIZE": "4",
        "YOLOQ_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "YOLOQ_METRICS_PORT": "0",
        "YOLOQ_WARMUP_IMGSZ": "256",
        "YOLOQ_MAX_BATCH": "4",
        "CLUSTER_API_URL": f"http://{hub}:{API_PORT}",
        "CLUSTER_API_KEY": API_KEY,
        "AWS_ACCESS_KEY_ID": "cluster",
        "AWS_SECRET_ACCESS_KEY": "cluster",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@contextlib.contextmanager
def deploy(
    work: Path, roles: list[str], sentinels: bool = False, **settings: str
) -> Iterator[Deployment]:
    """The hosts, Redis (with ``sentinels``: a master on the hub, a replica on ``db``,
    Sentinels on hub, db and client), the S3 server and the API on the hub, and a warm
    worker on each ``w*`` host. Everything is removed on the way out, failed or not."""
    require_namespaces()
    with cluster(roles) as hosts, ProcessGroup(work / "logs") as group:
        hub = hosts["hub"]
        if sentinels:
            redis_set = start_sentinel_set(
                group, hosts, work, servers=["hub", "db"], sentinels=["hub", "db", "client"]
            )
        else:
            redis_set = start_one_redis(group, hub, work)
        env = {**cluster_env(hub.address, redis_set.url), **settings}
        s3 = hub.argv(
            sys.executable, "-m", "yoloq.s3_server", "--host", hub.address, "--port", str(S3_PORT)
        )
        api = hub.argv(
            sys.executable, "-m", "yoloq", "api", "--host", hub.address, "--port", str(API_PORT)
        )
        group.start("hub-s3", s3, env)
        group.start("hub-api", api, env)
        deployment = Deployment(hosts, group, env, work, redis_set)
        wait_until(lambda: _answers(deployment), 60, "the hub's Redis and S3", interval_s=0.5)
        for role in roles:
            if role.startswith("w"):
                deployment.start_worker(role)
        yield deployment


def _answers(deployment: Deployment) -> bool:
    try:
        deployment.client("prepare", timeout_s=30)
    except AssertionError:
        return False
    return True
