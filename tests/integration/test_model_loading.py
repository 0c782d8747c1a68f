"""Model weights from S3, and a worker that cannot start says why."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import RESULTS_BUCKET
from workers.model import resolve_weights
from yoloq.model_files import sha256_of
from yoloq.object_store import ObjectStore


def test_s3_model_is_downloaded_once_and_refetched_when_replaced(
    object_store: ObjectStore, model_path: Path, tmp_path: Path
) -> None:
    key = f"models/{uuid.uuid4().hex}/detector.pt"
    object_store.put(RESULTS_BUCKET, key, model_path.read_bytes())
    uri = f"s3://{RESULTS_BUCKET}/{key}"

    first = resolve_weights(uri, object_store, tmp_path)
    assert sha256_of(first) == sha256_of(model_path)
    stamp = first.stat().st_mtime_ns
    second = resolve_weights(uri, object_store, tmp_path)
    assert second == first and second.stat().st_mtime_ns == stamp  # from the cache

    object_store.put(RESULTS_BUCKET, key, b"new weights")
    replaced = resolve_weights(uri, object_store, tmp_path)
    assert replaced != first and replaced.read_bytes() == b"new weights"
    assert not list(tmp_path.rglob("*.part"))


def _start_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_without_a_model_setting_says_so(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "YOLOQ_MODEL": ""}
    result = _start_worker(env, "--device", "cpu")
    assert result.returncode != 0
    assert "no model to serve: pass --model" in result.stderr


def test_worker_asked_for_a_model_the_registry_lacks_says_so(stack_env: dict[str, str]) -> None:
    result = _start_worker(stack_env, "--device", "cpu", "--model", "no-such-model@production")
    assert result.returncode != 0
    assert "cannot serve 'no-such-model@production'" in result.stderr
    assert "no model named 'no-such-model'" in result.stderr


def test_worker_refuses_a_model_past_its_memory_budget(stack_env: dict[str, str]) -> None:
    result = _start_worker({**stack_env, "YOLOQ_MODEL_MEMORY_MB": "1"}, "--device", "cpu")
    assert result.returncode != 0
    assert "MiB on cpu (measured at warm-up)" in result.stderr
    assert "past this worker's 1 MiB (YOLOQ_MODEL_MEMORY_MB" in result.stderr


def test_worker_asked_for_a_missing_gpu_says_so(stack_env: dict[str, str]) -> None:
    # No host has a GPU 99, so this holds on GPU machines too.
    result = _start_worker(stack_env, "--device", "cuda:99")
    assert result.returncode != 0
    assert "cuda:99 was requested but torch sees no CUDA device" in result.stderr
