"""Fixtures for the real servers every integration and e2e test runs against.

Redis is the server on 127.0.0.1:6379 (``make test`` starts it if needed); each run
claims a database number of its own so runs never collide. S3 is moto's server on a
free loopback port, reached over HTTP. Workers and the API are real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import redis

from tests.fault_proxy import FaultProxy
from yoloq.job_store import JobStore
from yoloq.local_services import (
    Process,
    ProcessGroup,
    free_port,
    port_open,
    start_s3,
    yoloq_argv,
)
from yoloq.object_store import ObjectStore
from yoloq.queue import ChunkQueue, make_celery
from yoloq.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM_KEY = "yoloq-test:claimed-by"

API_KEY = "tenant-a-key-0123456789"
OTHER_API_KEY = "tenant-b-key-0123456789"
ADMIN_API_KEY = "admin-key-0123456789"
LIMITED_API_KEY = "tenant-c-key-0123456789"
"""May read the input bucket, and run the model named shapes only."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


WEBHOOK_SECRET = "webhook-test-secret"
MAX_IMAGE_BYTES = 2_000_000
INPUT_BUCKET = "images"
OTHER_BUCKET = "other-team"
RESULTS_BUCKET = "yoloq-results"
UPLOADS_BUCKET = "yoloq-uploads"
API_KEYS = {
    key_hash(API_KEY): {"tenant": "tenant-a", "buckets": [INPUT_BUCKET]},
    key_hash(OTHER_API_KEY): {"tenant": "tenant-b", "buckets": [OTHER_BUCKET]},
    key_hash(ADMIN_API_KEY): {"tenant": "ops", "buckets": [], "admin": True},
    key_hash(LIMITED_API_KEY): {
        "tenant": "tenant-c",
        "buckets": [INPUT_BUCKET],
        "models": ["shapes"],
    },
}

# boto3 needs credentials; moto accepts any.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _claim_redis_db() -> int:
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        # Fail, never skip: a suite that skips the real path could go green without it.
        pytest.fail(
            f"no Redis on {REDIS_HOST}:{REDIS_PORT}; start one with `make redis` "
            '(redis-server --daemonize yes --port 6379 --save "" --appendonly no)'
        )
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    for db in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if client.set(CLAIM_KEY, owner, nx=True, ex=3 * 3600):
            client.flushdb()
            client.set(CLAIM_KEY, owner, ex=3 * 3600)
            return db
    pytest.fail("every Redis database 1-15 is claimed by another test run")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    db = _claim_redis_db()
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


@pytest.fixture(scope="session")
def process_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path_factory.mktemp("logs"))
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def s3_endpoint(process_group: ProcessGroup) -> str:
    endpoint = start_s3(process_group, free_port())
    client = boto3.client("s3", endpoint_url=endpoint)
    for bucket in (INPUT_BUCKET, OTHER_BUCKET, RESULTS_BUCKET, UPLOADS_BUCKET):
        client.create_bucket(Bucket=bucket)
    return endpoint


@pytest.fixture(scope="session")
def object_store(s3_endpoint: str) -> ObjectStore:
    return ObjectStore(s3_endpoint)


@pytest.fixture(scope="session")
def model_path() -> Path:
    # YOLOQ_TEST_MODEL runs the suite against other weights.
    path = Path(os.environ.get("YOLOQ_TEST_MODEL") or FIXTURES / "shapes_yolov8n.pt")
    assert path.is_file(), f"the model {path} is missing"
    return path


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled shapes set drawn as the fixture models' held-out set was (val seed 1,
    never trained on): ``images/val`` to score exports on, and 48 other images in
    ``images/train`` (seed 3) to calibrate INT8 on. Returns its dataset YAML."""
    out = tmp_path_factory.mktemp("shapes-dataset")
    script = ROOT / "scripts" / "make_shapes_dataset.py"
    arguments = ["--seed", "3", "--count", "48", "--val-seed", "1", "--val-count", "40"]
    subprocess.run([sys.executable, str(script), "--out", str(out), *arguments], check=True)
    return out / "shapes.yaml"


@pytest.fixture(scope="session")
def key_prefix() -> str:
    return f"yoloq-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def stack_env(
    redis_url: str,
    s3_endpoint: str,
    model_path: Path,
    key_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The environment every yoloq process of the session runs with."""
    return {
        "YOLOQ_REDIS_URL": redis_url,
        "YOLOQ_KEY_PREFIX": key_prefix,
        "YOLOQ_S3_ENDPOINT_URL": s3_endpoint,
        "YOLOQ_INPUT_BUCKETS": INPUT_BUCKET,
        "YOLOQ_RESULTS_BUCKET": RESULTS_BUCKET,
        "YOLOQ_UPLOADS_BUCKET": UPLOADS_BUCKET,
        "YOLOQ_MODEL": str(model_path),
        "YOLOQ_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "YOLOQ_CHUNK_SIZE": "4",
        "YOLOQ_PLAN_PAGE_CHUNKS": "2",  # planned jobs list 8 images to a page
        "YOLOQ_RESULT_SEGMENT_CHUNKS": "2",  # and join every 2 parts into a segment
        "YOLOQ_MAX_IMAGES_PER_JOB": "64",
        "YOLOQ_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "YOLOQ_HEARTBEAT_INTERVAL_S": "1",
        "YOLOQ_METRICS_PORT": str(free_port()),
        "YOLOQ_API_KEYS": json.dumps(API_KEYS),
        "YOLOQ_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "YOLOQ_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


@pytest.fixture(scope="session")
def job_store(redis_url: str, key_prefix: str) -> JobStore:
    return JobStore.from_url(redis_url, key_prefix)


@pytest.fixture(scope="session")
def worker(process_group: ProcessGroup, stack_env: dict[str, str], job_store: JobStore) -> str:
    """A real ``yoloq worker`` on the CPU; returns its name once its model is warm."""
    process = process_group.start("worker", yoloq_argv("worker", "--device", "cpu"), stack_env)
    names: list[str] = []

    def warmed() -> bool:
        names[:] = [w.name for w in job_store.live_workers(30) if w.warmed]
        return bool(names)

    process_group.wait_ready(process, warmed, timeout_s=180)
    return names[0]


@pytest.fixture(scope="session")
def api_url(process_group: ProcessGroup, stack_env: dict[str, str]) -> str:
    """The API under uvicorn, as in production."""
    port = free_port()
    process = process_group.start(
        "api", yoloq_argv("api", "--host", "127.0.0.1", "--port", str(port)), stack_env
    )
    process_group.wait_ready(process, lambda: port_open("127.0.0.1", port), timeout_s=60)
    return f"http://127.0.0.1:{port}"


@dataclass
class WorkerLauncher:
    """Starts ``yoloq worker`` processes of its own, with settings of a test's choosing,
    in a process group the test owns (so it can kill them)."""

    group: ProcessGroup
    env: dict[str, str]
    job_store: JobStore
    started: int = 0

    def start(self, name: str, **settings: str) -> Process:
        self.started += 1
        launched = datetime.now(tz=UTC)
        env = {**self.env, "YOLOQ_METRICS_PORT": "0", **settings}
        argv = yoloq_argv("worker", "--device", "cpu", "--name", name)
        process = self.group.start(f"worker-{name}-{self.started}", argv, env)

        def warmed() -> bool:
            return any(
                w.name == name and w.warmed and w.started_at >= launched
                for w in self.job_store.live_workers(30)
            )

        self.group.wait_ready(process, warmed, timeout_s=180)
        return process

    def queue(self, model_name: str) -> ChunkQueue:
        return ChunkQueue(make_celery(Settings(redis_url=self.env["YOLOQ_REDIS_URL"])), model_name)


@pytest.fixture
def launcher(
    stack_env: dict[str, str], job_store: JobStore, tmp_path: Path
) -> Iterator[WorkerLauncher]:
    with ProcessGroup(tmp_path / "logs") as group:
        yield WorkerLauncher(group, stack_env, job_store)


@pytest.fixture
def fault_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """The S3 server behind a proxy that fails on request (see tests/fault_proxy.py)."""
    proxy = FaultProxy(s3_endpoint, hang_s=2.5, slow_s=8.0).start()
    yield proxy
    proxy.stop()
