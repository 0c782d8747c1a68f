"""yoloq on several hosts: a hub (Redis, the S3 server, the API), two worker hosts and a
client host, each a network namespace on one LAN (tests/cluster/hosts.py). Jobs are
submitted from the client host over HTTP; every process reaches the others by its host's
address. Faults are the network's: a worker host unplugged mid-job, or vanished.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.hosts import Cluster, Host, can_create_namespaces, cluster
from tests.conftest import API_KEY, API_KEYS, FIXTURES
from yoloq.local_services import Process, ProcessGroup, redis_server_binary, wait_until

REDIS_PORT, S3_PORT, API_PORT = 6379, 9000, 8000
HEARTBEAT_S = 1.0
"""A worker's heartbeat expires after three missed beats: 3 s here."""
VISIBILITY_TIMEOUT_S = 1200
"""The broker's own redelivery, which a lost worker's chunks must not have to wait for."""


@dataclass
class Deployment:
    hosts: Cluster
    group: ProcessGroup
    env: dict[str, str]
    work: Path
    workers: dict[str, Process]

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


def require_iptables() -> None:
    if not shutil.which("iptables"):
        pytest.fail("no iptables to drop packets with: apt-get install iptables")


def start_hub(group: ProcessGroup, hub: Host, env: dict[str, str], work: Path) -> None:
    redis = hub.argv(
        redis_server_binary(),
        "--bind", hub.address, "--port", str(REDIS_PORT), "--dir", str(work),
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
    )  # fmt: skip
    s3 = hub.argv(sys.executable, "-m", "moto.server", "-H", hub.address, "-p", str(S3_PORT))
    api = hub.argv(
        sys.executable, "-m", "yoloq", "api", "--host", hub.address, "--port", str(API_PORT)
    )
    for name, argv in (("redis", redis), ("s3", s3), ("api", api)):
        group.start(f"hub-{name}", argv, env)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    why_not = can_create_namespaces()
    if why_not and os.geteuid() == 0:
        # Root can make namespaces wherever this suite is meant to run (CI included):
        # failing there is a broken machine, never a reason to pass without the tests.
        pytest.fail(why_not)
    if why_not:
        pytest.skip(f"{why_not} (run as root to test many hosts)")
    work = tmp_path_factory.mktemp("cluster")
    with cluster(["hub", "w1", "w2", "client"]) as hosts, ProcessGroup(work / "logs") as group:
        hub = hosts["hub"].address
        env = {
            "YOLOQ_REDIS_URL": f"redis://{hub}:{REDIS_PORT}/0",
            "YOLOQ_S3_ENDPOINT_URL": f"http://{hub}:{S3_PORT}",
            "YOLOQ_INPUT_BUCKETS": "images",
            "YOLOQ_MODEL": str(FIXTURES / "shapes_yolov8n.pt"),
            "YOLOQ_API_KEYS": json.dumps(API_KEYS),
            "YOLOQ_CHUNK_SIZE": "4",
            "YOLOQ_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
            "YOLOQ_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "YOLOQ_METRICS_PORT": "0",
            "YOLOQ_WARMUP_IMGSZ": "256",
            "YOLOQ_MAX_BATCH": "4",
            "CLUSTER_API_URL": f"http://{hub}:{API_PORT}",
            "CLUSTER_API_KEY": API_KEY,
            "AWS_ACCESS_KEY_ID": "cluster",
            "AWS_SECRET_ACCESS_KEY": "cluster",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        start_hub(group, hosts["hub"], env, work)
        deployment = Deployment(hosts, group, env, work, {})
        wait_until(lambda: _answers(deployment), 60, "the hub's Redis and S3", interval_s=0.5)
        for role in ("w1", "w2"):
            deployment.start_worker(role)
        yield deployment


def _answers(deployment: Deployment) -> bool:
    try:
        deployment.client("prepare", timeout_s=30)
    except AssertionError:
        return False
    return True


def test_workers_on_two_hosts_share_jobs_from_a_client_host(deployment: Deployment) -> None:
    before = deployment.client("state")["workers"]
    submitted = deployment.submit(jobs=3, images=24)
    deployment.wait_done(submitted, timeout_s=180)
    deployment.check_ledger(submitted, "two-hosts")
    after = deployment.client("state")["workers"]
    per_host = {name: after[name]["images"] - before[name]["images"] for name in after}
    assert sum(per_host.values()) == 72, per_host
    assert all(images > 0 for images in per_host.values()), f"images per host: {per_host}"
    print(f"\nimages per worker host: {per_host}")


def cut_off(host: Host, how: str, cut: bool) -> None:
    if how == "unplugged":  # every call fails at once: the network is unreachable
        host.link(up=not cut)
    else:  # every packet lost: calls hang, and TCP delivers them late once healed
        host.drop_packets(1.0 if cut else 0.0)


@pytest.mark.parametrize("how", ["unplugged", "dropped"])
def test_a_partitioned_worker_host_doubles_nothing_and_rejoins(
    deployment: Deployment, how: str
) -> None:
    if how == "dropped":
        require_iptables()
    w1 = deployment.hosts["w1"]
    # At 640 the job lasts long enough to cut w1 off in the middle of it.
    submitted = deployment.submit(jobs=1, images=160, imgsz=640)
    deployment.client("holding", "cpu@w1")
    cut_off(w1, how, cut=True)
    try:
        # w1's heartbeat expires; w2 requeues what w1 held and finishes the job alone.
        deployment.wait_done(submitted, timeout_s=240)
        assert "cpu@w1" not in deployment.client("state")["workers"]
    finally:
        cut_off(w1, how, cut=False)
    # w1's late writes land now that its link is back: none may count twice.
    wait_until(lambda: deployment.warm("w1"), 60, "w1 to rejoin", interval_s=0.5)
    time.sleep(3 * HEARTBEAT_S)
    deployment.check_ledger(submitted, "partitioned")

    before = deployment.client("state")["workers"]["cpu@w1"]["images"]
    again = deployment.submit(jobs=2, images=24)
    deployment.wait_done(again, timeout_s=180)
    deployment.check_ledger(again, "after-partition")
    assert deployment.client("state")["workers"]["cpu@w1"]["images"] > before, "w1 took no work"


def test_a_vanished_worker_hosts_chunks_return_within_the_heartbeat_expiry(
    deployment: Deployment,
) -> None:
    w2 = deployment.hosts["w2"]
    submitted = deployment.submit(jobs=1, images=160, imgsz=640)
    deployment.client("holding", "cpu@w2")
    vanished = time.monotonic()
    w2.kill_everything()
    w2.link(up=False)
    deployment.wait_done(submitted, timeout_s=240)
    took = time.monotonic() - vanished
    assert took < VISIBILITY_TIMEOUT_S / 10, f"w2's chunks came back after {took:.0f} s"
    deployment.check_ledger(submitted, "vanished")
    w2.link(up=True)
    deployment.start_worker("w2")


LOSS = 0.02
"""Packets dropped at random on the worker hosts, each way."""
DELAY_MS = 20.0
"""Added on the worker hosts' paths to Redis and S3, each way: 40 ms more per round trip."""


def test_jobs_complete_exactly_once_over_a_lossy_slow_network(deployment: Deployment) -> None:
    require_iptables()
    clean = deployment.images_per_s(jobs=4, images=24)
    hub = deployment.hosts["hub"].address
    redis_port, s3_port = 16379, 19000
    for role in ("w1", "w2"):
        deployment.stop_worker(role)
        deployment.delay(role, redis_port, f"{hub}:{REDIS_PORT}", DELAY_MS)
        deployment.delay(role, s3_port, f"{hub}:{S3_PORT}", DELAY_MS)
        deployment.hosts[role].drop_packets(LOSS)
        deployment.start_worker(
            role,
            YOLOQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            YOLOQ_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}",
        )
    try:
        degraded = deployment.images_per_s(jobs=4, images=24)
    finally:
        for role in ("w1", "w2"):
            deployment.hosts[role].drop_packets(0.0)
    # Reported, not asserted: the suite times nothing (bench/ does).
    print(
        f"\n{LOSS:.0%} loss and {DELAY_MS:.0f} ms each way on the worker hosts: "
        f"{degraded:.1f} images/s against {clean:.1f} on the clean network "
        f"({degraded / clean:.2f})"
    )
