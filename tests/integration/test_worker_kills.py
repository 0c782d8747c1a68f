"""Workers killed (``kill -9``), stopped (SIGTERM) and fed a chunk that kills them, with
real worker processes on the real broker: every image ends with exactly one result."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import ADMIN_API_KEY, API_KEY, INPUT_BUCKET, RESULTS_BUCKET, WorkerLauncher
from tests.fault_proxy import FaultProxy
from tests.jobs import check_ledger, put_images, submit, wait_final
from yoloq import keys
from yoloq.archive import ResultArchive
from yoloq.client import Client
from yoloq.job_store import JobStore
from yoloq.local_services import Process, ProcessGroup, free_port, port_open, wait_until, yoloq_argv
from yoloq.object_store import ObjectStore
from yoloq.results import DetectResult, detections_of
from yoloq.schemas import ImageRef, ItemErrorCode, JobStatus

# Short limits, so the broker's own redelivery (the backstop) also acts within a test.
LIMITS = {
    "YOLOQ_MAX_BATCH": "2",
    "YOLOQ_CHUNK_SOFT_LIMIT_S": "15",
    "YOLOQ_CHUNK_HARD_LIMIT_S": "20",
    "YOLOQ_VISIBILITY_TIMEOUT_S": "30",
}


def _kill(process: Process) -> None:
    process.popen.send_signal(signal.SIGKILL)
    process.popen.wait(10)


def _deliveries(job_store: JobStore, job_id: str, chunk: int) -> int:
    return int(job_store.redis.hget(job_store.keys.job_deliveries(job_id), str(chunk)) or 0)


def _counted_delivery(object_store: ObjectStore, job_id: str, chunk: int) -> int:
    """Which delivery's part was counted, from parts.json (an ended job's delivery counts
    are dropped from Redis)."""
    index = ResultArchive(object_store, RESULTS_BUCKET).read_parts_index(job_id)
    assert index is not None
    return index[1][chunk].delivery


def test_kill_9_mid_job_loses_and_doubles_nothing(
    launcher: WorkerLauncher, job_store: JobStore, object_store: ObjectStore
) -> None:
    env = {**LIMITS, "YOLOQ_MODEL_NAME": "kills"}
    workers = {name: launcher.start(name, **env) for name in ("a@kills", "b@kills")}
    queue = launcher.queue("kills")
    jobs = {}
    rng = random.Random(7)
    # Round 0: the victim is restarted at once and requeues its own leftovers. Round 1:
    # it stays dead until the survivor sees its heartbeat expire and requeues them.
    # Round 2: the other worker is killed.
    for round, victim in enumerate(["a@kills", "a@kills", "b@kills"]):
        images = put_images(object_store, 24, prefix=f"kills-{round}")
        job_id = submit(job_store, object_store, queue, images, chunk_size=2)
        jobs[job_id] = images
        wait_until(
            lambda v=victim: bool(job_store.inflight(v)),  # type: ignore[misc]
            60,
            f"{victim} to take a chunk",
        )
        time.sleep(rng.uniform(0, 0.3))
        _kill(workers[victim])
        if round == 1:
            wait_until(
                lambda v=victim: not job_store.inflight(v),  # type: ignore[misc]
                30,
                "the surviving worker to requeue the dead one's chunks",
            )
        workers[victim] = launcher.start(victim, **env)

    for job_id, images in jobs.items():
        # A kill in the moment between taking a message and listing it in flight leaves
        # that chunk to the broker's redelivery: visibility timeout plus a 10 s look.
        wait_final(job_store, job_id, timeout_s=150)
        assert check_ledger(job_store, object_store, job_id, images) == {"ok": len(images)}
    assert job_store.queued_images_for("kills") == 0
    assert all(process.alive() for process in workers.values())


def test_sigterm_finishes_or_hands_back_every_chunk(
    launcher: WorkerLauncher, job_store: JobStore, object_store: ObjectStore
) -> None:
    env = {**LIMITS, "YOLOQ_MODEL_NAME": "sigterm"}
    worker = launcher.start("g@sigterm", **env)
    queue = launcher.queue("sigterm")
    images = put_images(object_store, 24, prefix="sigterm")
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    chunks = 12

    def started() -> bool:
        record = job_store.get(job_id)
        return bool(record and record.public.done >= 2 and job_store.inflight("g@sigterm"))

    wait_until(started, 60, "the worker to be part-way through the job")
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(60) == 0, worker.log_tail()

    counted = job_store.counted_parts(job_id)
    prefix = keys.result_part_key(job_id, 0, 0).rpartition("/")[0] + "/"
    listing = object_store.client.list_objects_v2(Bucket=RESULTS_BUCKET, Prefix=prefix)
    written = {entry["Key"] for entry in listing.get("Contents", [])}
    # Only counted chunks have a part (one each), and each is whole: every line of the
    # chunk, nothing else. A chunk never begun left nothing half-written.
    assert written == {keys.result_part_key(job_id, c, p.delivery) for c, p in counted.items()}
    for chunk, part in counted.items():
        data = object_store.get(RESULTS_BUCKET, keys.result_part_key(job_id, chunk, part.delivery))
        assert len(data.decode().splitlines()) == 2
    assert job_store.inflight("g@sigterm") == []
    # Every chunk not recorded is back in the queue, once.
    waiting = sum(job_store.redis.llen(name) for name in queue.queues)
    assert len(counted) + waiting == chunks
    assert len(counted) < chunks, "the job ended before the stop; nothing was tested"

    launcher.start("g@sigterm", **env)
    wait_final(job_store, job_id)
    assert check_ledger(job_store, object_store, job_id, images) == {"ok": 24}


def test_a_chunk_that_keeps_killing_its_worker_is_dead_lettered(
    launcher: WorkerLauncher,
    job_store: JobStore,
    object_store: ObjectStore,
    fault_proxy: FaultProxy,
    api_url: str,
) -> None:
    env = {
        **LIMITS,
        "YOLOQ_MODEL_NAME": "poison",
        "YOLOQ_MAX_DELIVERIES": "2",
        "YOLOQ_WORKER_CONCURRENCY": "1",
        # Chunk 1's images download slowly, so the test sees it running and kills it.
        "YOLOQ_S3_ENDPOINT_URL": fault_proxy.url,
    }
    name = "p@poison"
    worker = launcher.start(name, **env)
    queue = launcher.queue("poison")
    images = (
        put_images(object_store, 2, prefix="poison")
        + put_images(object_store, 2, prefix="poison/fault-slow")
        + put_images(object_store, 2, prefix="poison")
    )
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    # Whenever chunk 1 starts, its worker dies (as on a decoder crash or an OOM kill).
    for delivery in (1, 2):
        wait_until(
            lambda d=delivery: _deliveries(job_store, job_id, 1) == d,  # type: ignore[misc]
            60,
            f"delivery {delivery} of chunk 1",
        )
        _kill(worker)
        worker = launcher.start(name, **env)

    record = wait_final(job_store, job_id)
    assert record.public.status == JobStatus.PARTIAL
    statuses = check_ledger(job_store, object_store, job_id, images)
    assert statuses == {"ok": 4, ItemErrorCode.POISON: 2}
    assert _counted_delivery(object_store, job_id, 1) == 3

    headers = {"Authorization": f"Bearer {API_KEY}"}
    page = httpx.get(f"{api_url}/v1/jobs/{job_id}/results", headers=headers).json()
    poisoned = [item for item in page["items"] if item["status"] == "error"]
    assert [item["index"] for item in poisoned] == [2, 3]
    assert all(item["error"]["code"] == "poison" for item in poisoned)
    assert "delivered 2 times" in poisoned[0]["error"]["message"]

    admin = {"Authorization": f"Bearer {ADMIN_API_KEY}"}
    letters = httpx.get(f"{api_url}/v1/dead-letters", headers=admin).json()
    ours = [letter for letter in letters if letter["job_id"] == job_id]
    assert len(ours) == 1
    assert ours[0]["chunk"] == 1 and ours[0]["deliveries"] == 2 and ours[0]["worker"] == name
    assert [ref["key"] for ref in ours[0]["task"]["images"]] == [ref.key for ref in images[2:4]]
    assert httpx.get(f"{api_url}/v1/dead-letters", headers=headers).status_code == 403


def _take_unlisted(job_store: JobStore, model: str, delivered_at: float) -> str:
    """Take chunk 0's message the way kombu does (listed as unacknowledged, delivered at
    ``delivered_at``), never to acknowledge it or list it in flight; its delivery tag."""
    redis = job_store.redis
    raw = redis.rpop(keys.queue_for_chunk(model, "normal", 0))
    assert raw is not None
    message = json.loads(raw)
    info = message["properties"]["delivery_info"]
    tag: str = message["properties"]["delivery_tag"]
    redis.hset("unacked", tag, json.dumps([message, info["exchange"], info["routing_key"]]))
    redis.zadd("unacked_index", {tag: delivered_at})
    return tag


def test_a_chunk_taken_but_never_listed_returns_after_the_visibility_timeout(
    launcher: WorkerLauncher, job_store: JobStore, object_store: ObjectStore
) -> None:
    """The backstop: a worker killed between taking a message and listing it in flight.
    The test takes the message itself, the way kombu does, and never acknowledges it."""
    env = {
        "YOLOQ_MODEL_NAME": "backstop",
        "YOLOQ_MAX_BATCH": "2",
        "YOLOQ_CHUNK_SOFT_LIMIT_S": "4",
        "YOLOQ_CHUNK_HARD_LIMIT_S": "8",
        "YOLOQ_VISIBILITY_TIMEOUT_S": "10",
    }
    queue = launcher.queue("backstop")
    images = put_images(object_store, 2, prefix="backstop")
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    tag = _take_unlisted(job_store, "backstop", time.time())

    launcher.start("w@backstop", **env)
    record = wait_final(job_store, job_id, timeout_s=60)
    assert record.public.status == JobStatus.SUCCEEDED
    assert check_ledger(job_store, object_store, job_id, images) == {"ok": 2}
    assert job_store.redis.hget("unacked", tag) is None


def test_a_chunk_its_dead_taker_never_listed_returns_when_a_worker_starts(
    launcher: WorkerLauncher, job_store: JobStore, object_store: ObjectStore
) -> None:
    """The same loss long before the visibility timeout (20 minutes): a starting worker
    finds the message unacknowledged, listed by no worker, and sends its chunk again, as
    a live worker does when another's heartbeat expires (the vanished host in
    tests/cluster/test_hosts.py)."""
    queue = launcher.queue("unlisted")
    images = put_images(object_store, 2, prefix="unlisted")
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    tag = _take_unlisted(job_store, "unlisted", time.time() - 60)

    launcher.start("w@unlisted", YOLOQ_MODEL_NAME="unlisted", YOLOQ_MAX_BATCH="2")
    record = wait_final(job_store, job_id, timeout_s=60)
    assert record.public.status == JobStatus.SUCCEEDED
    assert check_ledger(job_store, object_store, job_id, images) == {"ok": 2}
    assert job_store.redis.hget("unacked", tag) is None
    assert job_store.redis.zscore("unacked_index", tag) is None


def test_a_chunk_the_broker_lost_is_sent_again(
    launcher: WorkerLauncher, redis_url: str, object_store: ObjectStore
) -> None:
    """kombu takes a message with BRPOP before it records it as unacknowledged: a worker
    killed in between loses it outright. The test takes it and drops it, the same way."""
    # A deployment of its own: the sweep runs by the settings of the deployment's workers.
    prefix = f"lost-{uuid.uuid4().hex[:8]}"
    job_store = JobStore.from_url(redis_url, prefix)
    own = WorkerLauncher(launcher.group, {**launcher.env, "YOLOQ_KEY_PREFIX": prefix}, job_store)
    queue = own.queue("lost")
    images = put_images(object_store, 6, prefix="lost")
    job_id = submit(job_store, object_store, queue, images, chunk_size=2)
    assert job_store.redis.rpop(keys.queue_for_chunk("lost", "normal", 0)) is not None

    own.start("w@lost", YOLOQ_MODEL_NAME="lost", YOLOQ_LOST_CHUNK_AFTER_S="2")
    record = wait_final(job_store, job_id, timeout_s=60)
    assert record.public.status == JobStatus.SUCCEEDED
    assert check_ledger(job_store, object_store, job_id, images) == {"ok": 6}
    assert _counted_delivery(object_store, job_id, 0) == 1  # sent again once, run once
    job_store.redis.close()


def test_a_worker_killed_while_a_request_waits_still_answers(
    launcher: WorkerLauncher,
    job_store: JobStore,
    object_store: ObjectStore,
    stack_env: dict[str, str],
    fault_proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """The first worker takes the image and dies on it; the request waits on, and the
    redelivery to a second worker answers it."""
    model = {"YOLOQ_MODEL_NAME": "detect-kills"}
    victim = launcher.start("a@detect-kills", **model, YOLOQ_S3_ENDPOINT_URL=fault_proxy.url)
    data = (Path(__file__).parents[1] / "fixtures" / "samples" / "sample_s7_00002.jpg").read_bytes()
    key = f"detect-kills/{uuid.uuid4().hex}/fault-slow.jpg"  # the proxy trickles it
    object_store.put(INPUT_BUCKET, key, data)

    with ProcessGroup(tmp_path / "api-logs") as group:
        port = free_port()
        api = group.start("api", yoloq_argv("api", "--port", str(port)), {**stack_env, **model})
        group.wait_ready(api, lambda: port_open("127.0.0.1", port), timeout_s=60)
        answers: list[DetectResult] = []
        with Client(f"http://127.0.0.1:{port}", api_key=API_KEY) as client:
            ref = ImageRef(bucket=INPUT_BUCKET, key=key)
            waiting = threading.Thread(
                target=lambda: answers.append(client.detect(ref, timeout_s=110))
            )
            waiting.start()
            wait_until(lambda: bool(job_store.inflight("a@detect-kills")), 60, "the chunk taken")
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait(10)
            launcher.start("b@detect-kills", **model)
            waiting.join(120)
    [answer] = answers
    assert answer.item.status == "ok" and detections_of(answer.item)
    assert job_store.get(answer.job_id).public.status == JobStatus.SUCCEEDED  # type: ignore[union-attr]
    deliveries = job_store.redis.hgetall(job_store.keys.job_deliveries(answer.job_id))
    assert deliveries == {"0": "2"}
