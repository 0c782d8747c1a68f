"""``python -m workers.healthcheck`` as the container runs it, against the real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from yoloq.job_store import JobStore
from yoloq.local_services import free_port
from yoloq.schemas import WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


@pytest.fixture
def prefix() -> str:
    return f"hc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(redis_url: str, prefix: str) -> JobStore:
    return JobStore.from_url(redis_url, prefix)


def _beat(store: JobStore, name: str, *, warmed: bool) -> None:
    now = datetime.now(tz=UTC)
    beat = WorkerHeartbeat(
        name=name,
        device="cuda:1",
        models=[],
        warmed=warmed,
        threads=1,
        max_batch=1,
        batch_sizes={},
        images_done=0,
        started_at=now,
        last_seen=now,
    )
    store.heartbeat(beat, ttl_s=60)


def _probe(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "YOLOQ_REDIS_URL": redis_url,
        "YOLOQ_KEY_PREFIX": prefix,
        "YOLOQ_HEARTBEAT_INTERVAL_S": "5",
        # Run the worktree's code, as the image runs its own.
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_no_heartbeat_is_not_ready(redis_url: str, prefix: str) -> None:
    result = _probe(redis_url, prefix)
    assert result.returncode == 1
    assert result.stderr.strip() == f"not ready: no live heartbeat from a worker named '*@{HOST}'"


def test_a_cold_worker_is_not_ready_until_warmed(
    redis_url: str, prefix: str, store: JobStore
) -> None:
    _beat(store, f"gpu1@{HOST}", warmed=False)
    cold = _probe(redis_url, prefix)
    assert cold.returncode == 1
    assert "not warmed" in cold.stderr
    assert len(cold.stderr.strip().splitlines()) == 1

    _beat(store, f"gpu1@{HOST}", warmed=True)
    warm = _probe(redis_url, prefix)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.strip() == "ready"


def test_name_picks_one_worker(redis_url: str, prefix: str, store: JobStore) -> None:
    _beat(store, "gpu0@elsewhere", warmed=True)
    # By default only this host's workers count: a warm worker elsewhere is not this one.
    assert _probe(redis_url, prefix).returncode == 1
    assert _probe(redis_url, prefix, "--name", "gpu0@elsewhere").returncode == 0
    missing = _probe(redis_url, prefix, "--name", "gpu9@elsewhere")
    assert missing.returncode == 1
    assert "'gpu9@elsewhere'" in missing.stderr


def test_a_stale_heartbeat_is_not_ready(redis_url: str, prefix: str, store: JobStore) -> None:
    _beat(store, f"cpu@{HOST}", warmed=True)
    # Last seen long ago: more than three 5 s beats missed, so the worker is gone even
    # though its hash has not expired yet.
    store.redis.zadd(store.keys.workers(), {f"cpu@{HOST}": 0})
    result = _probe(redis_url, prefix)
    assert result.returncode == 1
    assert "no live heartbeat" in result.stderr


def test_redis_down_is_not_ready(prefix: str) -> None:
    # A port nothing listens on.
    result = _probe(f"redis://127.0.0.1:{free_port()}/0", prefix)
    assert result.returncode == 1
    assert result.stderr.startswith("not ready: redis unreachable")
