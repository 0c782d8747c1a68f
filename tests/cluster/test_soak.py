"""The soak on many hosts: jobs keep arriving from the client host while, at random, a
worker host is cut off and healed, a worker host vanishes and comes back, or a worker is
killed; once, half way, the Redis master is killed and the Sentinels fail over. Then
every image submitted must have exactly one result. Slow, so left out of `make test`:

    make soak-cluster                       # 10 minutes
    YOLOQ_SOAK_MINUTES=2 make soak-cluster  # a shorter run

Hosts: the hub (S3, API, Redis master, a Sentinel), db (the replica, a Sentinel), two
worker hosts and the client (the submitter, a Sentinel). Only worker hosts are cut off:
the Sentinels keep their quorum, and the failover is the only Redis fault.
Its last line is the ledger: partitions, vanished, kills, failovers, jobs, images, lost,
duplicated.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.deployment import Deployment, cut_off, deploy, require_iptables
from tests.jobs import SOAK_SETTINGS
from yoloq.local_services import wait_until

MINUTES = float(os.environ.get("YOLOQ_SOAK_MINUTES", "10"))
WORKER_HOSTS = ("w1", "w2")


def partition(deployment: Deployment, rng: random.Random) -> None:
    """A worker host cut off past its heartbeat's expiry, then healed: it rejoins alone."""
    host = deployment.hosts[rng.choice(WORKER_HOSTS)]
    how = rng.choice(["unplugged", "dropped"])
    cut_off(host, how, cut=True)
    try:
        time.sleep(rng.uniform(5, 15))
    finally:
        cut_off(host, how, cut=False)


def vanish(deployment: Deployment, rng: random.Random) -> None:
    """Every process on a worker host killed at once and its link gone; later the host
    comes back and a new worker starts there."""
    role = rng.choice(WORKER_HOSTS)
    host = deployment.hosts[role]
    host.kill_everything()
    host.link(up=False)
    time.sleep(rng.uniform(0, 8))
    host.link(up=True)
    deployment.start_worker(role)


def kill_worker(deployment: Deployment, rng: random.Random) -> None:
    role = rng.choice(WORKER_HOSTS)
    worker = deployment.workers[role]
    worker.popen.send_signal(signal.SIGKILL)
    worker.popen.wait(10)
    time.sleep(rng.choice([0, 0, 2, 8]))  # sometimes back at once, sometimes not
    deployment.start_worker(role)


def fail_over(deployment: Deployment, rng: random.Random) -> None:
    """kill -9 the master; once a Sentinel has promoted the replica, the old master comes
    back as the new one's replica (so jobs, which need a replica's ack, are taken again)."""
    old = deployment.redis_master()
    server = deployment.redis.servers[old]
    server.popen.send_signal(signal.SIGKILL)
    server.popen.wait(10)

    def promoted() -> bool:
        try:
            return deployment.redis_master() != old
        except AssertionError:
            return False

    wait_until(promoted, 60, "a Sentinel to promote the replica", interval_s=0.5)
    time.sleep(rng.uniform(1, 5))
    deployment.restart_redis(old, replica_of=deployment.redis_master())


EVENTS = {"partition": partition, "vanished": vanish, "kill": kill_worker}


@pytest.mark.slow
@pytest.mark.timeout(int(MINUTES * 60) + 1200)
def test_soak_on_many_hosts(tmp_path: Path) -> None:
    require_iptables()
    settings = {"YOLOQ_REDIS_REPLICAS_TO_ACK": "1", **SOAK_SETTINGS}
    roles = ["hub", "db", "w1", "w2", "client"]
    with deploy(tmp_path, roles, sentinels=True, **settings) as deployment:
        accepted = tmp_path / "accepted.jsonl"
        command = ["soak-submit", str(MINUTES * 60), str(accepted)]
        argv = deployment.hosts["client"].argv(sys.executable, "-m", "tests.cluster.client")
        submitter = deployment.group.start("submitter", [*argv, *command], deployment.env)
        rng = random.Random(3)
        faults: Counter[str] = Counter()
        started = time.monotonic()
        failover_at = started + MINUTES * 30
        while submitter.alive():
            time.sleep(rng.uniform(8, 20))
            if not submitter.alive():
                break
            if not faults["failovers"] and time.monotonic() >= failover_at:
                fail_over(deployment, rng)
                faults["failovers"] += 1
                continue
            name = rng.choice(list(EVENTS))
            EVENTS[name](deployment, rng)
            faults[name] += 1
        assert submitter.popen.wait() == 0, submitter.log_tail()
        for role in WORKER_HOSTS:  # the last fault may have left one down
            if not deployment.workers[role].alive():
                deployment.start_worker(role)

        def all_final() -> bool:
            return int(deployment.client("soak-pending", str(accepted))["pending"]) == 0

        wait_until(all_final, 900, "every accepted job to finish", interval_s=5)
        minutes = (time.monotonic() - started) / 60
        tally = deployment.client("soak-ledger", str(accepted), timeout_s=600)
        refused = json.loads(submitter.log_path.read_text().splitlines()[-1])["refused"]

    summary = (
        f"soak-cluster: minutes={minutes:.1f} partitions={faults['partition']} "
        f"vanished={faults['vanished']} kills={faults['kill']} "
        f"failovers={faults['failovers']} jobs={tally['jobs']} images={tally['images']} "
        f"lost={tally['lost']} duplicated={tally['duplicated']} "
        f"outcomes={tally['outcomes']} queued={tally['queued']} "
        f"dead_letters={tally['dead_letters']} refused={refused}"
    )
    print(summary)
    Path(os.environ.get("YOLOQ_SOAK_REPORT", tmp_path / "soak.txt")).write_text(summary + "\n")
    assert faults["failovers"] == 1 and sum(faults.values()) >= 3, summary
    assert (tally["lost"], tally["duplicated"]) == (0, 0), summary
    assert tally["outcomes"] == {"ok": tally["images"]}, summary
    assert not any(tally["queued"].values()), summary
