"""The compose stack from the built images, driven over HTTP: `make images-test`.

docker-compose.yml as a user runs it (`--profile cpu`, or `gpu` on a GPU host), with the
stand-ins of deploy/local/compose.standins.yml only for the public Redis and MinIO images
that cannot be pulled here. Needs a Docker engine and the images of
`deploy/local/images.sh --standins`; left out of the default suite (marker ``images``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from tests import image_factory as make
from tests.conftest import key_hash
from yoloq import keys
from yoloq.client import Client
from yoloq.local_services import free_port, wait_until
from yoloq.schemas import ImageRef, JobPublic, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.images

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("yoloq-api", "yoloq-worker", "yoloq-local/redis", "yoloq-local/s3")
API_KEY = "images-test-key-0123456789"
S3_USER, S3_PASSWORD = "yoloq", "images-test-secret"
FLOWER_AUTH = ("admin", "flower-secret")
MODEL = "s3://models/shapes_yolov8n.pt"
HEALTH_TIMEOUT_S = 360
# On a GPU host with the NVIDIA container toolkit: YOLOQ_IMAGES_TEST_WORKER=worker-gpu0.
WORKER = os.environ.get("YOLOQ_IMAGES_TEST_WORKER", "worker-cpu")
PROFILE = "gpu" if WORKER.startswith("worker-gpu") else "cpu"


def compose_command() -> list[str]:
    """Compose v2: the docker CLI plugin, else the standalone binary beside this Python
    (Makefile's images-test installs it where Debian only packages Compose v1)."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if standalone:
        return [standalone]
    pytest.fail("no Docker Compose v2: run `make images-test`, which installs it")


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    api_url: str
    flower_url: str
    s3_url: str

    def run(self, *args: str, timeout_s: float = 600) -> str:
        result = subprocess.run(
            [*self.compose, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def container(self, service: str) -> str:
        (container_id,) = self.run("ps", "--all", "-q", service).split()
        return container_id

    def inspect(self, service: str, template: str) -> str:
        out = subprocess.run(
            ["docker", "inspect", "-f", template, self.container(service)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")

    def wait_healthy(self, *services: str) -> None:
        for service in services:
            wait_until(
                lambda s=service: self.health(s) == "healthy",  # type: ignore[misc]
                timeout_s=HEALTH_TIMEOUT_S,
                what=f"{service} to turn healthy (now {self.health(service)!r})",
            )

    def save_logs(self) -> None:
        """Every container's log, in test-artifacts/, while the containers still exist."""
        logs = subprocess.run(
            [*self.compose, "logs", "--no-color", "--timestamps"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if logs.stdout:
            out = ROOT / "test-artifacts" / f"{self.env['COMPOSE_PROJECT_NAME']}.log"
            out.parent.mkdir(exist_ok=True)
            out.write_text(logs.stdout + logs.stderr)

    def s3(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_USER,
            aws_secret_access_key=S3_PASSWORD,
            region_name="us-east-1",
        )


@contextlib.contextmanager
def running_stack(profiles: list[str], **settings: str) -> Iterator[Stack]:
    """A compose project of its own, on free ports; taken down with its volumes after."""
    missing = [
        image
        for image in IMAGES
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    ]
    if missing:
        pytest.fail(f"images {missing} not built: run `make images-test`")
    api_port, flower_port, s3_port, console_port = (free_port() for _ in range(4))
    project = f"yoloq-images-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        # `up` names its services, so a worker in a profile starts only when told.
        "COMPOSE_PROFILES": ",".join(profiles),
        "COMPOSE_FILE": os.pathsep.join(
            ["docker-compose.yml", "deploy/local/compose.standins.yml"]
        ),
        "MINIO_ROOT_USER": S3_USER,
        "MINIO_ROOT_PASSWORD": S3_PASSWORD,
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "YOLOQ_MODEL": MODEL,
        "YOLOQ_API_KEYS": json.dumps(
            {key_hash(API_KEY): {"tenant": "line-1", "buckets": ["images"]}}
        ),
        "MODELS_DIR": str(ROOT / "tests" / "fixtures"),
        "API_PORT": str(api_port),
        "FLOWER_PORT": str(flower_port),
        "MINIO_PORT": str(s3_port),
        "MINIO_CONSOLE_PORT": str(console_port),
        **settings,
    }
    stack = Stack(
        compose=compose_command(),
        env=env,
        api_url=f"http://127.0.0.1:{api_port}",
        flower_url=f"http://127.0.0.1:{flower_port}",
        s3_url=f"http://127.0.0.1:{s3_port}",
    )
    try:
        yield stack
    finally:
        stack.save_logs()
        subprocess.run(
            [*stack.compose, "down", "--volumes", "--timeout", "30"],
            cwd=ROOT,
            env=env,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack([PROFILE]) as running:
        yield running


def put_images(stack: Stack, n: int, prefix: str) -> list[ImageRef]:
    s3 = stack.s3()
    refs = []
    for i in range(n):
        key = f"{prefix}/{i:04d}.jpg"
        s3.put_object(Bucket="images", Key=key, Body=make.jpeg(320 + 16 * (i % 5), 240, seed=i))
        refs.append(ImageRef(bucket="images", key=key))
    return refs


def results_lines(stack: Stack, job: JobPublic) -> list[dict[str, Any]]:
    """The job's results.jsonl, read from the S3 server itself."""
    body = stack.s3().get_object(Bucket=job.results.bucket, Key=job.results.key)["Body"]
    return [json.loads(line) for line in body.read().decode().splitlines()]


def result_parts(stack: Stack, job: JobPublic) -> list[list[dict[str, Any]]]:
    """Every result part the workers wrote for the job so far, parsed."""
    s3 = stack.s3()
    prefix = keys.result_part_key(job.id, 0, 0).rpartition("/")[0] + "/"
    listing = s3.list_objects_v2(Bucket=job.results.bucket, Prefix=prefix)
    parts = []
    for entry in listing.get("Contents", []):
        body = s3.get_object(Bucket=job.results.bucket, Key=entry["Key"])["Body"].read()
        parts.append([json.loads(line) for line in body.decode().splitlines()])
    return parts


def test_the_stack_serves_a_job_from_the_built_images(stack: Stack, tmp_path: Path) -> None:
    # Everything but the worker: the API is healthy but not ready, since nothing serves.
    stack.run("up", "-d", "--no-build", "api", "flower")
    stack.wait_healthy("redis", "minio", "api", "flower")
    assert stack.inspect("minio-init", "{{.State.ExitCode}}") == "0"
    readyz = httpx.get(f"{stack.api_url}/readyz", timeout=10)
    assert readyz.status_code == 503, readyz.text

    stack.run("up", "-d", "--no-build", WORKER)
    stack.wait_healthy(WORKER)
    assert httpx.get(f"{stack.api_url}/readyz", timeout=10).status_code == 200

    # Non-root, and the model landed in the cache volume: it is writable by that user.
    uid = stack.run("exec", "-T", WORKER, "id", "-u").strip()
    assert uid == "10001"
    cached = stack.run("exec", "-T", WORKER, "find", "/var/cache/yoloq", "-name", "*.pt")
    assert "shapes_yolov8n.pt" in cached, cached

    # The worker's name, as compose.yml's `--name cpu@%h` (or gpuN@%h) makes it.
    name = f"{WORKER.removeprefix('worker-')}@{stack.inspect(WORKER, '{{.Config.Hostname}}')}"
    flower = httpx.get(
        f"{stack.flower_url}/api/workers", params={"refresh": "true"}, auth=FLOWER_AUTH, timeout=30
    )
    assert flower.status_code == 200 and name in flower.json(), flower.text

    with Client(stack.api_url, API_KEY) as client:
        upload = tmp_path / "frame.jpg"
        upload.write_bytes(make.jpeg(640, 480, seed=99))
        images = [client.upload(upload), *put_images(stack, 7, "first")]
        accepted = client.submit(images)
        job = client.wait(accepted.id, timeout_s=300)
        assert job.status == JobStatus.SUCCEEDED, job
        assert (job.total, job.done, job.failed) == (8, 8, 0)
        items = list(client.results(accepted.id))
    assert sorted(item.index for item in items) == list(range(8))
    lines = results_lines(stack, job)
    assert sorted(line["index"] for line in lines) == list(range(8))


def test_a_stopped_worker_finishes_its_chunk_and_a_restarted_one_the_job(stack: Stack) -> None:
    """`docker compose stop` (and `down`) is SIGTERM: Celery's warm shutdown, within
    stop_grace_period. Nothing half-written, and the job completes exactly once."""
    with Client(stack.api_url, API_KEY) as client:
        accepted = client.submit(put_images(stack, 200, "stopped"))
        wait_until(
            lambda: client.job(accepted.id).done > 0, timeout_s=300, what="the first results"
        )
        started = time.monotonic()
        stack.run("stop", WORKER, timeout_s=180)
        stopped_in = time.monotonic() - started
        # 0: the worker exited by itself after its running chunk; 137 would be SIGKILL.
        assert stack.inspect(WORKER, "{{.State.ExitCode}}") == "0"
        assert stopped_in < 120, stopped_in
        partway = client.job(accepted.id)
        assert partway.status != JobStatus.SUCCEEDED, "the job finished before the stop"
        # What the stopped worker left: whole result parts, each chunk's items once, and
        # exactly the items the job's counters say are done.
        parts = result_parts(stack, partway)
        indexes = [line["index"] for part in parts for line in part]
        assert parts and len(indexes) == len(set(indexes)) == partway.done

        stack.run("start", WORKER)
        job = client.wait(accepted.id, timeout_s=600)
        assert job.status == JobStatus.SUCCEEDED, job
        assert (job.total, job.done, job.failed) == (200, 200, 0)
    counts = Counter(line["index"] for line in results_lines(stack, job))
    assert sorted(counts) == list(range(200)) and set(counts.values()) == {1}

    stack.save_logs()
    stack.run("down", "--timeout", "120")
    assert not stack.run("ps", "--all", "-q").split(), "containers left after down"


HA_SUBNET = "172.29.58"
"""Not the default subnet, so the HA stack never overlaps another test's network."""
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def test_the_ha_profile_fails_over_and_every_job_completes_exactly_once() -> None:
    """`--profile ha`: the Redis master's container killed mid-job; the Sentinels promote
    the replica, yoloq follows them, and the old master comes back as a replica."""
    settings = {
        "YOLOQ_REDIS_URL": "redis+sentinel://"
        + ",".join(f"{name}:26379" for name in SENTINELS)
        + "/yoloq/0",
        "YOLOQ_REDIS_REPLICAS_TO_ACK": "1",
        "YOLOQ_SUBNET": f"{HA_SUBNET}.0/24",
        "REDIS_ADDRESS": f"{HA_SUBNET}.10",
        "REDIS_REPLICA_ADDRESS": f"{HA_SUBNET}.11",
        "SENTINEL_DOWN_AFTER_MS": "2000",
    }
    with running_stack([PROFILE, "ha"], **settings) as stack:
        stack.run("up", "-d", "--no-build")
        stack.wait_healthy("redis", "redis-replica", *SENTINELS, "api", WORKER)

        def master() -> str:
            answer = stack.run(
                "exec", "-T", "sentinel-1",
                "redis-cli", "-p", "26379", "SENTINEL", "get-master-addr-by-name", "yoloq",
            )  # fmt: skip
            return answer.split()[0] if answer.split() else ""

        assert master() == settings["REDIS_ADDRESS"]
        with Client(stack.api_url, API_KEY, timeout_s=60) as client:
            first = client.submit(put_images(stack, 8, "ha-before"))
            assert client.wait(first.id, timeout_s=300).status == JobStatus.SUCCEEDED

            during = client.submit(put_images(stack, 64, "ha-during"))
            wait_until(lambda: client.job(during.id).done > 0, 300, "the job to start")
            stack.run("kill", "-s", "SIGKILL", "redis")
            wait_until(
                lambda: master() == settings["REDIS_REPLICA_ADDRESS"],
                60,
                "the Sentinels to promote the replica",
                interval_s=0.5,
            )
            # Back, the old master is made the new one's replica: jobs are taken again.
            stack.run("start", "redis")

            def following() -> bool:
                state = stack.run("exec", "-T", "redis", "redis-cli", "info", "replication")
                return "role:slave" in state and "master_link_status:up" in state

            wait_until(following, 120, "the old master to follow the new one", interval_s=1)
            job = client.wait(during.id, timeout_s=600)
            assert job.status == JobStatus.SUCCEEDED, job
            assert (job.total, job.done, job.failed) == (64, 64, 0)
            counts = Counter(line["index"] for line in results_lines(stack, job))
            assert sorted(counts) == list(range(64)) and set(counts.values()) == {1}

            after = client.submit(put_images(stack, 8, "ha-after"))
            assert client.wait(after.id, timeout_s=300).status == JobStatus.SUCCEEDED
