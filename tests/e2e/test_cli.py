"""The ``yoloq`` command against the running service, as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import cv2

from tests import image_factory as make
from tests.conftest import ADMIN_API_KEY, API_KEY, INPUT_BUCKET
from yoloq.object_store import ObjectStore


def _yoloq(api_url: str, *args: str, key: str = API_KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yoloq", *args, "--api", api_url],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "YOLOQ_API_KEY": key},
    )


def test_submit_folder_and_s3_prefix_then_status_results_workers(
    api_url: str, worker: str, object_store: ObjectStore, stack_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.jpg").write_bytes(make.jpeg(320, 240, seed=i))
    (folder / "notes.txt").write_text("not an image")
    prefix = f"cli/{uuid.uuid4().hex}"
    for i in range(2):
        object_store.put(INPUT_BUCKET, f"{prefix}/s{i}.png", make.png(seed=i))

    out = tmp_path / "results.jsonl"
    annotated = tmp_path / "annotated"
    os.environ["YOLOQ_S3_ENDPOINT_URL"] = stack_env["YOLOQ_S3_ENDPOINT_URL"]
    try:
        result = _yoloq(
            api_url, "submit", f"s3://{INPUT_BUCKET}/{prefix}", str(folder),
            "--out", str(out), "--annotate", str(annotated), "--conf", "0.3",
        )  # fmt: skip
    finally:
        del os.environ["YOLOQ_S3_ENDPOINT_URL"]
    assert result.returncode == 0, result.stderr
    assert "succeeded: 5 images, 0 failed" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(5))
    assert [line["key"].rsplit("/", 1)[-1] for line in lines[:2]] == ["s0.png", "s1.png"]
    assert sorted(p.name for p in annotated.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    drawn = cv2.imread(str(annotated / "p0.jpg"))
    assert drawn is not None and drawn.shape == (240, 320, 3)

    job_id = result.stderr.split("job ", 1)[1].split(":", 1)[0]
    status = json.loads(_yoloq(api_url, "status", job_id).stdout)
    assert (status["status"], status["done"]) == ("succeeded", 5)

    coco_path = tmp_path / "coco.json"
    assert (
        _yoloq(api_url, "results", job_id, "--format", "coco", "--out", str(coco_path)).returncode
        == 0
    )
    coco = json.loads(coco_path.read_text())
    assert [image["id"] for image in coco["images"]] == list(range(5))
    assert {"images", "annotations", "categories"} <= set(coco)

    refused = _yoloq(api_url, "workers")
    assert refused.returncode != 0 and "admin" in refused.stderr
    table = _yoloq(api_url, "workers", key=ADMIN_API_KEY).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "DEVICE", "MODELS"]
    assert worker in table and " yes " in table


def test_submit_with_nothing_to_send_says_so(api_url: str, tmp_path: Path) -> None:
    result = _yoloq(api_url, "submit", str(tmp_path / "missing.jpg"))
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_detect_prints_the_item_of_one_image(
    api_url: str, worker: str, object_store: ObjectStore, tmp_path: Path
) -> None:
    sample = Path(__file__).parents[1] / "fixtures" / "samples" / "sample_s7_00004.jpg"
    from_file = _yoloq(api_url, "detect", str(sample), "--imgsz", "320", "--conf", "0.5")
    assert from_file.returncode == 0, from_file.stderr
    item = json.loads(from_file.stdout)
    assert item["status"] == "ok" and item["task"] == "detect"
    assert len(item["detections"]) >= 3
    assert all(d["confidence"] >= 0.5 for d in item["detections"])
    assert f"{len(item['detections'])} found" in from_file.stderr

    key = f"cli/{uuid.uuid4().hex}/frame.jpg"
    object_store.put(INPUT_BUCKET, key, sample.read_bytes())
    from_s3 = _yoloq(api_url, "detect", f"s3://{INPUT_BUCKET}/{key}", "--imgsz", "320")
    assert from_s3.returncode == 0 and json.loads(from_s3.stdout)["key"] == key

    missing = _yoloq(api_url, "detect", str(tmp_path / "nope.jpg"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    refused = _yoloq(api_url, "detect", str(not_an_image))
    assert refused.returncode != 0 and "422" in refused.stderr


def test_submit_a_manifest_is_listed_by_the_workers(
    api_url: str, worker: str, object_store: ObjectStore, tmp_path: Path
) -> None:
    prefix = f"cli-manifest/{uuid.uuid4().hex}"
    for i in range(5):
        object_store.put(INPUT_BUCKET, f"{prefix}/m{i}.png", make.png(seed=i))
    lines = "".join(json.dumps({"key": f"{prefix}/m{i}.png"}) + "\n" for i in range(5))
    object_store.put(INPUT_BUCKET, f"{prefix}/list.jsonl", lines.encode())
    out = tmp_path / "results.jsonl"
    manifest = f"s3://{INPUT_BUCKET}/{prefix}/list.jsonl"
    result = _yoloq(api_url, "submit", "--manifest", manifest, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "listed by the workers" in result.stderr
    assert "succeeded: 5 images, 0 failed" in result.stderr
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert keys == [f"{prefix}/m{i}.png" for i in range(5)]
