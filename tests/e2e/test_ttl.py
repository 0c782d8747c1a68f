"""YOLOQ_RESULT_TTL_S for real: Redis lets the job expire, the API answers from S3."""

from __future__ import annotations

from tests.conftest import API_KEY, WorkerLauncher
from tests.jobs import put_images
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import free_port, port_open, wait_until, yoloq_argv
from yoloq.object_store import ObjectStore

TTL_S = 6


def test_after_the_ttl_the_job_and_results_come_from_s3(
    launcher: WorkerLauncher, worker: str, job_store: JobStore, object_store: ObjectStore
) -> None:
    port = free_port()
    env = {**launcher.env, "YOLOQ_RESULT_TTL_S": str(TTL_S)}
    api = launcher.group.start("api-ttl", yoloq_argv("api", "--port", str(port)), env)
    launcher.group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
    with Client(f"http://127.0.0.1:{port}", API_KEY) as client:
        images = put_images(object_store, 3, prefix="ttl")
        job_id = client.submit(images).id
        # Two chunks (of 4): its items are in its parts, named by parts.json after the TTL.
        parted_id = client.submit(put_images(object_store, 6, prefix="ttl")).id
        before = client.wait(job_id, timeout_s=TTL_S - 1)
        parted_before = client.wait(parted_id, timeout_s=TTL_S - 1)
        items = list(client.results(job_id))
        parted = list(client.results(parted_id))
        assert before.status == "succeeded" and len(items) == 3
        assert parted_before.status == "succeeded" and len(parted) == 6

        keys = job_store.keys
        in_redis = [keys.job(job_id), keys.job_items(job_id), keys.job_chunks_done(job_id)]
        assert all(0 < job_store.redis.ttl(key) <= TTL_S for key in in_redis)
        wait_until(lambda: job_store.redis.exists(*in_redis) == 0, 2 * TTL_S, "Redis to expire it")

        assert client.job(job_id) == before
        assert list(client.results(job_id, page_size=2)) == items
        wait_until(
            lambda: job_store.redis.exists(keys.job(parted_id)) == 0, 2 * TTL_S, "the other too"
        )
        assert client.job(parted_id) == parted_before
        assert list(client.results(parted_id, page_size=4)) == parted
        assert client.results_page(parted_id, offset=5, limit=3).items == parted[5:]
