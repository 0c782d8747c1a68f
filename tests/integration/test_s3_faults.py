"""S3 misbehaving between a real worker and the S3 server: retried when it may pass,
refused at once when it cannot, recorded as a clear item error either way; the worker
never crashes and results are written once S3 is back."""

from __future__ import annotations

import httpx

from tests import image_factory as make
from tests.conftest import INPUT_BUCKET, RESULTS_BUCKET, WorkerLauncher
from tests.fault_proxy import FaultProxy
from tests.jobs import check_ledger, submit, wait_final
from yoloq.archive import ResultArchive
from yoloq.job_results import read_items
from yoloq.job_store import JobStore
from yoloq.local_services import free_port
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, ItemErrorCode

ATTEMPTS = 3


def test_s3_faults_become_item_errors_or_are_retried(
    launcher: WorkerLauncher,
    fault_proxy: FaultProxy,
    object_store: ObjectStore,
    job_store: JobStore,
) -> None:
    metrics_port = free_port()
    worker = launcher.start(
        "faults@test",
        YOLOQ_MODEL_NAME="faults",
        YOLOQ_S3_ENDPOINT_URL=fault_proxy.url,
        YOLOQ_S3_MAX_ATTEMPTS=str(ATTEMPTS),
        YOLOQ_S3_BACKOFF_S="0.05",
        YOLOQ_S3_READ_TIMEOUT_S="1",
        YOLOQ_S3_CONNECT_TIMEOUT_S="1",
        YOLOQ_CHUNK_SOFT_LIMIT_S="6",
        YOLOQ_CHUNK_HARD_LIMIT_S="20",
        YOLOQ_VISIBILITY_TIMEOUT_S="30",
        YOLOQ_MAX_BATCH="2",
        YOLOQ_METRICS_PORT=str(metrics_port),
    )
    queue = launcher.queue("faults")
    names = ["ok", "fault-503x2", "fault-503", "fault-hang", "fault-403", "missing", "fault-slow"]
    images = [ImageRef(bucket=INPUT_BUCKET, key=f"faults/{name}.jpg") for name in names]
    for n, ref in enumerate(images):
        if "missing" not in ref.key:
            object_store.put(INPUT_BUCKET, ref.key, make.jpeg(320, 240, seed=n))

    job_id = submit(job_store, object_store, queue, images, chunk_size=4)
    wait_final(job_store, job_id, timeout_s=90)
    check_ledger(job_store, object_store, job_id, images)
    archive = ResultArchive(object_store, RESULTS_BUCKET)
    items = read_items(job_store, archive, job_id, 0, len(images), len(images))
    codes = {
        name: item.error.code if item and item.error else "ok"
        for name, item in zip(names, items, strict=True)
    }
    assert codes == {
        "ok": "ok",
        "fault-503x2": "ok",  # two 503s, then the third try passes
        "fault-503": ItemErrorCode.STORAGE_UNAVAILABLE,
        "fault-hang": ItemErrorCode.STORAGE_UNAVAILABLE,  # read timeouts
        "fault-403": ItemErrorCode.ACCESS_DENIED,
        "missing": ItemErrorCode.NOT_FOUND,
        "fault-slow": ItemErrorCode.TIMEOUT,  # past the soft limit, though never idle 1s
    }
    tries = {name: fault_proxy.count("GET", f"faults/{name}.jpg") for name in names}
    assert tries == {
        "ok": 1,
        "fault-503x2": 3,
        "fault-503": ATTEMPTS,
        "fault-hang": ATTEMPTS,
        "fault-403": 1,  # refused: trying again would not help
        "missing": 1,
        "fault-slow": 1,
    }
    messages = {
        name: item.error.message
        for name, item in zip(names, items, strict=True)
        if item and item.error
    }
    assert "failed 3 times" in messages["fault-503"] and "SlowDown" in messages["fault-503"]
    assert "may not read" in messages["fault-403"]
    assert "YOLOQ_CHUNK_SOFT_LIMIT_S" in messages["fault-slow"]

    # S3 refuses writes for a while: the chunk's results wait for it instead of being lost.
    fault_proxy.fail_writes = ATTEMPTS + 2
    again = submit(job_store, object_store, queue, images[:1], chunk_size=4)
    wait_final(job_store, again, timeout_s=60)
    assert check_ledger(job_store, object_store, again, images[:1]) == {"ok": 1}
    assert fault_proxy.fail_writes == 0
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'yoloq_worker_outage_retries_total{store="s3"}' in metrics
    assert worker.alive()
