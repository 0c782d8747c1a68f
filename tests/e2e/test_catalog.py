"""The model catalog through the whole service: models pushed with the CLI, one worker
serving six versions of five models (every task), jobs naming models, versions and
aliases, a canary split, a tenant limited to some models, and the lineage on every item.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch

from scripts.make_shapes_dataset import CLASS_NAMES, generate_image, generate_shapes_image
from scripts.make_task_datasets import (
    classify_crop_boxes,
    crop_image,
    obb_ground_truth,
    pose_ground_truth,
    segment_ground_truth,
)
from tests.conftest import (
    ADMIN_API_KEY,
    API_KEY,
    FIXTURES,
    INPUT_BUCKET,
    LIMITED_API_KEY,
)
from tests.image_factory import encode
from workers.weights_info import read_weights_info
from yoloq.catalog import Alias, ModelStatus
from yoloq.client import ApiError, Client
from yoloq.job_store import JobStore
from yoloq.local_services import ProcessGroup, wait_until, yoloq_argv
from yoloq.model_files import sha256_of
from yoloq.object_store import ObjectStore
from yoloq.registry import ModelRegistry
from yoloq.results import (
    ClassifyItem,
    Mask,
    ObbItem,
    PoseItem,
    ResultItem,
    SegmentItem,
    detections_of,
)
from yoloq.schemas import ImageRef, InferenceParams, JobStatus

WORKER = "catalog-worker"
TASK_MODELS = {
    "parts-seg": "shapes_yolov8n-seg.pt",
    "robot-pose": "shapes_yolov8n-pose.pt",
    "aerial-obb": "shapes_yolov8n-obb.pt",
    "pass-fail": "shapes_yolov8n-cls.pt",
}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        yoloq_argv(*args), env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _second_version(weights: Path, out: Path) -> Path:
    """The same network saved again with another date: other bytes, a new version."""
    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    checkpoint["date"] = "2026-12-01T00:00:00"
    torch.save(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def pushed(
    stack_env: dict[str, str], model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Every model pushed with ``yoloq models push``; the SHA-256 of each version id."""
    import os

    env = {**os.environ, **stack_env}
    shapes_v2 = _second_version(model_path, tmp_path_factory.mktemp("v2") / "shapes-v2.pt")
    pushes = [("shapes", model_path), ("shapes", shapes_v2)]
    pushes += [(name, FIXTURES / file) for name, file in TASK_MODELS.items()]
    digests = {}
    for name, weights in pushes:
        done = _cli(env, "models", "push", str(weights), "--name", name)
        assert done.returncode == 0, done.stderr
        digests[done.stdout.strip()] = sha256_of(weights)
    assert set(digests) == {"shapes:1", "shapes:2", *(f"{name}:1" for name in TASK_MODELS)}
    # The same bytes again: the same version, not a new one.
    again = _cli(env, "models", "push", str(model_path), "--name", "shapes")
    assert again.returncode == 0 and again.stdout.strip() == "shapes:1", again.stderr
    assert "already there" in again.stderr
    done = _cli(env, "models", "alias", "shapes", "production", "1")
    assert done.returncode == 0 and "shapes@production -> 1" in done.stdout, done.stderr
    return digests


@pytest.fixture(scope="module")
def catalog_worker(
    pushed: dict[str, str],
    stack_env: dict[str, str],
    job_store: JobStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """One worker serving every version: shapes:1 and :2 and one of each task."""
    env = {
        **stack_env,
        "YOLOQ_MODEL": ",".join(["shapes:1", "shapes:2", *TASK_MODELS]),
        "YOLOQ_MAX_BATCH": "4",
        "YOLOQ_METRICS_PORT": "0",
    }
    with ProcessGroup(tmp_path_factory.mktemp("catalog-logs")) as group:
        process = group.start(
            WORKER, yoloq_argv("worker", "--device", "cpu", "--name", WORKER), env
        )

        def warmed() -> bool:
            return any(w.name == WORKER and w.warmed for w in job_store.live_workers(30))

        group.wait_ready(process, warmed, timeout_s=300)
        yield WORKER


@pytest.fixture(scope="module")
def client(api_url: str, catalog_worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


@pytest.fixture(scope="module")
def admin(api_url: str) -> Iterator[Client]:
    with Client(api_url, api_key=ADMIN_API_KEY) as api_client:
        yield api_client


def _images(store: ObjectStore, count: int, seed: int = 9100) -> list[ImageRef]:
    refs = []
    for i in range(count):
        image, _ = generate_image(seed + i)
        key = f"catalog/{uuid.uuid4().hex}.jpg"
        store.put(INPUT_BUCKET, key, encode(image, ".jpg"))
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
    return refs


def _run(
    client: Client, refs: list[ImageRef], model: str | None, params: InferenceParams | None = None
) -> list[ResultItem]:
    accepted = client.submit(refs, params, model=model)
    job = client.wait(accepted.id, timeout_s=300)
    assert job.status == JobStatus.SUCCEEDED, job
    assert job.model == accepted.model
    return list(client.results(accepted.id))


def test_jobs_name_a_version_and_every_item_says_which_weights_ran_it(
    client: Client, object_store: ObjectStore, pushed: dict[str, str]
) -> None:
    refs = _images(object_store, 6)
    for model, expected in [("shapes:1", "shapes:1"), ("shapes:2", "shapes:2")]:
        items = _run(client, refs, model)
        version = int(expected.split(":")[1])
        assert {(i.model, i.version, i.sha256, i.task) for i in items} == {
            ("shapes", version, pushed[expected], "detect")
        }
        assert sum(len(detections_of(i)) for i in items) >= 6
    # A bare name is its production alias.
    items = _run(client, refs, "shapes")
    assert {i.version for i in items} == {1}


def test_every_task_through_the_service(
    client: Client, object_store: ObjectStore, pushed: dict[str, str]
) -> None:
    refs = _images(object_store, 4)
    segments = _run(client, refs, "parts-seg", InferenceParams(imgsz=320))
    assert all(isinstance(i, SegmentItem) for i in segments)
    found = [d for i in segments if isinstance(i, SegmentItem) for d in i.detections]
    assert found and all(len(d.mask.parts[0].outline) >= 3 and d.mask.area > 0 for d in found)
    assert all(d.mask.rle is None for d in found)  # RLE only when asked for
    with_rle = _run(client, refs[:1], "parts-seg", InferenceParams(imgsz=320, masks="rle"))
    assert isinstance(with_rle[0], SegmentItem)
    for detection in with_rle[0].detections:
        rle = detection.mask.rle
        assert rle is not None and rle.size == [with_rle[0].height, with_rle[0].width]
        assert sum(rle.counts) == rle.size[0] * rle.size[1]

    poses = _run(client, refs, "robot-pose", InferenceParams(imgsz=320))
    points = [
        k for i in poses if isinstance(i, PoseItem) for d in i.detections for k in d.keypoints
    ]
    assert points and {k.name for k in points} == {
        "top_left",
        "top_right",
        "bottom_right",
        "bottom_left",
    }

    oriented = _run(client, refs, "aerial-obb", InferenceParams(imgsz=320))
    boxes = [d.rotated_box for i in oriented if isinstance(i, ObbItem) for d in i.detections]
    assert boxes and all(len(b.corners) == 4 for b in boxes)

    crops = _run(client, refs, "pass-fail", InferenceParams(top_k=2))
    assert all(isinstance(i, ClassifyItem) and len(i.classes) == 2 for i in crops)
    assert {i.sha256 for i in crops} == {pushed["pass-fail:1"]}


def test_an_unknown_model_version_or_alias_is_refused_by_name(
    client: Client, object_store: ObjectStore
) -> None:
    refs = _images(object_store, 1)
    for model, named in [
        ("no-such-model", "no model named 'no-such-model'"),
        ("shapes:9", "no version 9"),
        ("shapes@nightly", "no alias 'nightly'"),
    ]:
        with pytest.raises(ApiError) as refused:
            client.submit(refs, model=model)
        assert refused.value.status_code == 422, model
        assert named in str(refused.value.detail), refused.value.detail
    # A reference that does not parse is refused by the body's validation.
    response = client.http.post(
        "/v1/jobs", json={"images": [refs[0].model_dump()], "model": "Bad Name!"}
    )
    assert response.status_code == 422 and "a name is" in response.text


def test_a_key_limited_to_some_models_gets_403_for_the_others(
    api_url: str, object_store: ObjectStore, catalog_worker: str
) -> None:
    refs = _images(object_store, 1)
    with Client(api_url, api_key=LIMITED_API_KEY) as limited:
        accepted = limited.submit(refs, model="shapes:2")
        assert accepted.model is not None and accepted.model.id == "shapes:2"
        with pytest.raises(ApiError) as refused:
            limited.submit(refs, model="parts-seg")
        assert refused.value.status_code == 403
        assert "may not run model 'parts-seg'" in str(refused.value.detail)
        assert [m.name for m in limited.models()] == ["shapes"]


def test_a_canary_split_gets_its_share_and_a_retry_gets_the_same_version(
    client: Client, admin: Client, object_store: ObjectStore
) -> None:
    refs = _images(object_store, 1)
    shown = admin.set_alias("shapes", "canary", "1:90,2:10")
    assert str(shown.aliases["canary"]) == "1:90,2:10"
    split = Alias.parse("1:90,2:10")
    pinned: Counter[int] = Counter()
    jobs = []
    for _ in range(200):
        accepted = client.submit(refs, model="shapes@canary")
        assert accepted.model is not None and accepted.model.version is not None
        # Chosen from the job id, so anyone can tell which version a job gets.
        assert accepted.model.version == split.choose(accepted.id)
        pinned[accepted.model.version] += 1
        jobs.append(accepted)
    # 10% of 200 is 20; this range fails about once in 20,000 runs.
    assert 5 <= pinned[2] <= 40 and pinned[1] + pinned[2] == 200, pinned
    # A retried submit is the same job, so the same version.
    key = uuid.uuid4().hex
    first = client.submit(refs, model="shapes@canary", idempotency_key=key)
    retried = client.submit(refs, model="shapes@canary", idempotency_key=key)
    assert (retried.id, retried.model) == (first.id, first.model)
    for accepted in jobs[:40]:
        client.wait(accepted.id, timeout_s=300)
        [item] = client.results(accepted.id)
        assert accepted.model is not None and item.version == accepted.model.version


def test_moving_an_alias_leaves_accepted_jobs_on_their_version(
    client: Client, admin: Client, object_store: ObjectStore
) -> None:
    refs = _images(object_store, 24)
    admin.set_alias("shapes", "line-3", "1")
    before = client.submit(refs, model="shapes@line-3")
    admin.set_alias("shapes", "line-3", "2")
    # The API caches what it read of a model for YOLOQ_CATALOG_CACHE_S (2 s).
    wait_until(
        lambda: client.submit(refs[:1], model="shapes@line-3").model.version == 2,  # type: ignore[union-attr]
        timeout_s=10,
        what="new jobs to see the moved alias",
    )
    client.wait(before.id, timeout_s=300)
    assert {item.version for item in client.results(before.id)} == {1}


def test_models_show_versions_aliases_workers_and_queues(
    client: Client, admin: Client, catalog_worker: str, pushed: dict[str, str]
) -> None:
    models = {m.name: m for m in client.models()}
    assert set(TASK_MODELS) | {"shapes"} <= set(models)
    shapes = client.model("shapes")
    assert [v.version for v in shapes.versions] == [1, 2]
    assert all(v.workers == [catalog_worker] for v in shapes.versions)
    assert [v.sha256 for v in shapes.versions] == [pushed["shapes:1"], pushed["shapes:2"]]
    assert str(shapes.aliases["production"]) == "1"
    assert shapes.versions[0].class_names == {0: "circle", 1: "square", 2: "triangle", 3: "star"}
    assert {models[name].task for name in TASK_MODELS} == {"segment", "pose", "obb", "classify"}
    with pytest.raises(ApiError) as refused:
        client.set_alias("shapes", "production", "2")
    assert refused.value.status_code == 403
    # The worker's heartbeat: each version it serves, warm, its memory and its own batches
    # (a batch never mixes models, so each version's batches count its images alone).
    [beat] = [w for w in admin.workers() if w.name == catalog_worker]
    served = {m.id: m for m in beat.models}
    assert set(served) == {"shapes:1", "shapes:2", *(f"{name}:1" for name in TASK_MODELS)}
    assert all(m.warmed and m.memory_bytes > 0 and m.max_batch == 4 for m in served.values())
    assert {served["parts-seg:1"].task, served["pass-fail:1"].task} == {"segment", "classify"}
    assert all(served[f"{name}:1"].batch_sizes for name in TASK_MODELS)


def test_a_model_no_worker_serves_is_queued_and_shown_without_workers(
    client: Client, admin: Client, object_store: ObjectStore, stack_env: dict[str, str]
) -> None:
    import os

    env = {**os.environ, **stack_env}
    done = _cli(env, "models", "push", str(FIXTURES / "shapes_yolov8n-cls.pt"), "--name", "idle")
    assert done.returncode == 0, done.stderr
    accepted = client.submit(_images(object_store, 3), model="idle")
    assert accepted.status == JobStatus.QUEUED and accepted.model is not None
    idle: ModelStatus = client.model("idle")
    assert idle.workers == [] and idle.queued_images == 3
    assert idle.versions[0].queued_images == 3
    # Nothing lost: cancelled, its images leave the count.
    httpx.delete(
        f"{client.http.base_url}/v1/jobs/{accepted.id}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).raise_for_status()
    assert client.model("idle").queued_images == 0


def test_a_worker_following_an_alias_loads_the_new_version_then_drains_the_old(
    admin: Client,
    client: Client,
    object_store: ObjectStore,
    stack_env: dict[str, str],
    job_store: JobStore,
    model_path: Path,
    tmp_path: Path,
) -> None:
    """The alias moves while a job pinned to the old version runs and new jobs keep coming:
    every job runs on the version it was pinned to, none is lost, and the old version is
    unloaded only once its queue is empty."""
    registry = ModelRegistry(object_store, "yoloq-models")
    weights = {1: model_path, 2: _second_version(model_path, tmp_path / "conveyor-v2.pt")}
    info = read_weights_info(model_path)
    for number, path in weights.items():
        version, _ = registry.push(path, "conveyor", info)
        assert version.version == number
    registry.set_alias("conveyor", "production", Alias.parse("1"))
    env = {
        **stack_env,
        "YOLOQ_MODEL": "conveyor@production",
        "YOLOQ_ALIAS_POLL_S": "1",
        "YOLOQ_MAX_BATCH": "2",
        "YOLOQ_METRICS_PORT": "0",
    }
    name = "follower"

    def serving() -> set[str]:
        return {m.id for w in job_store.live_workers(5) if w.name == name for m in w.models}

    with ProcessGroup(tmp_path / "logs") as group:
        process = group.start(name, yoloq_argv("worker", "--device", "cpu", "--name", name), env)
        group.wait_ready(process, lambda: serving() == {"conveyor:1"}, timeout_s=180)
        refs = _images(object_store, 64, seed=9300)
        long_job = client.submit(refs, model="conveyor")
        admin.set_alias("conveyor", "production", "2")
        jobs = [long_job]
        seen: list[set[str]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs.append(client.submit(refs[:2], model="conveyor"))
            seen.append(serving())
            if seen[-1] == {"conveyor:2"} and len(jobs) > 20:
                break
            time.sleep(0.3)
        # The new version was served beside the old before the old went.
        assert {"conveyor:1", "conveyor:2"} in seen, seen
        assert seen[-1] == {"conveyor:2"}, seen
        for accepted in jobs:
            job = client.wait(accepted.id, timeout_s=300)
            assert job.status == JobStatus.SUCCEEDED, job
            assert accepted.model is not None
            versions = {item.version for item in client.results(accepted.id)}
            assert versions == {accepted.model.version}
        assert {j.model.version for j in jobs if j.model} == {1, 2}
        assert long_job.model is not None and long_job.model.version == 1
        assert job_store.queued_images_for("conveyor:1") == 0


def _filled(shape: tuple[int, int], polygon: Any) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(np.asarray(polygon, dtype=np.float32)).astype(np.int32)], 1)
    return canvas.astype(bool)


def _mask_pixels(mask: Mask, shape: tuple[int, int]) -> np.ndarray:
    covered = np.zeros(shape, dtype=bool)
    for part in mask.parts:
        covered |= _filled(shape, part.outline)
        for hole in part.holes:
            covered &= ~_filled(shape, hole)
    return covered


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_every_task_finds_the_drawn_shapes_through_the_service(
    client: Client, object_store: ObjectStore
) -> None:
    """Ground truth, not parity: held-out images whose every shape is known exactly (the
    fixtures' training seeds were 0 and 1)."""
    drawn = [generate_shapes_image(9500 + i) for i in range(10)]
    refs = []
    for image, _ in drawn:
        # JPEG: a large drawn image as PNG is over the suite's YOLOQ_MAX_IMAGE_BYTES.
        key = f"catalog/truth/{uuid.uuid4().hex}.jpg"
        object_store.put(INPUT_BUCKET, key, encode(image, ".jpg"))
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
    params = InferenceParams(imgsz=320)

    # Segment: each drawn shape's polygon against the best mask of its class.
    found = ious = 0.0
    truths = 0
    for item, (image, shapes) in zip(_run(client, refs, "parts-seg", params), drawn, strict=True):
        assert isinstance(item, SegmentItem)
        size = image.shape[:2]
        for truth in segment_ground_truth(shapes, size[1], size[0]):
            target = _filled(size, truth.polygon)
            best = max(
                (
                    _iou(_mask_pixels(d.mask, size), target)
                    for d in item.detections
                    if d.class_name == CLASS_NAMES[truth.class_id]
                ),
                default=0.0,
            )
            truths += 1
            found += best >= 0.5
            ious += best
    assert truths > 30 and found / truths > 0.85, (found, truths)
    assert ious / truths > 0.75

    # Pose: each square's four corners.
    errors, squares, matched = [], 0, 0
    for item, (image, shapes) in zip(_run(client, refs, "robot-pose", params), drawn, strict=True):
        assert isinstance(item, PoseItem)
        h, w = image.shape[:2]
        for square in pose_ground_truth(shapes, w, h):
            squares += 1
            x1, y1, x2, y2 = square.box
            centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            near = [
                d
                for d in item.detections
                if np.linalg.norm(np.array(d.box[:2]) + np.array(d.box[2:]) - 2 * centre)
                < (x2 - x1) / 2
            ]
            if not near:
                continue
            matched += 1
            side = max(x2 - x1, y2 - y1)
            for got, (x, y, visible) in zip(near[0].keypoints, square.keypoints, strict=True):
                if visible:
                    errors.append(float(np.hypot(got.x - x, got.y - y)) / side)
    assert squares >= 5 and matched / squares > 0.85, (matched, squares)
    # About 7% of the side here; a corner given for its neighbour would be 100%.
    assert float(np.median(errors)) < 0.12, errors

    # OBB: each rectangle's corners against the best rotated box of its class.
    found, truths = 0, 0
    for item, (image, shapes) in zip(_run(client, refs, "aerial-obb", params), drawn, strict=True):
        assert isinstance(item, ObbItem)
        size = image.shape[:2]
        for rectangle in obb_ground_truth(shapes, size[1], size[0]):
            target = _filled(size, rectangle.corners)
            best = max(
                (
                    _iou(_filled(size, d.rotated_box.corners), target)
                    for d in item.detections
                    if d.class_name == CLASS_NAMES[rectangle.class_id]
                ),
                default=0.0,
            )
            truths += 1
            found += best >= 0.5
    assert truths > 30 and found / truths > 0.85, (found, truths)

    # Classify: a crop of each shape, named as drawn.
    crops, names = [], []
    for image, shapes in drawn[:4]:
        h, w = image.shape[:2]
        for crop in classify_crop_boxes(shapes, w, h):
            key = f"catalog/truth/crop-{uuid.uuid4().hex}.png"
            object_store.put(INPUT_BUCKET, key, encode(crop_image(image, crop.box), ".png"))
            crops.append(ImageRef(bucket=INPUT_BUCKET, key=key))
            names.append(CLASS_NAMES[crop.class_id])
    items = _run(client, crops, "pass-fail")
    right = sum(
        isinstance(item, ClassifyItem) and item.classes[0].class_name == name
        for item, name in zip(items, names, strict=True)
    )
    assert len(crops) > 10 and right / len(crops) > 0.9, (right, len(crops))


def test_an_export_is_a_file_of_its_version_and_a_worker_can_serve_it(
    client: Client,
    object_store: ObjectStore,
    stack_env: dict[str, str],
    job_store: JobStore,
    model_path: Path,
    tmp_path: Path,
) -> None:
    import os

    env = {**os.environ, **stack_env}
    done = _cli(env, "models", "push", str(model_path), "--name", "exported")
    assert done.returncode == 0 and done.stdout.strip() == "exported:1", done.stderr
    done = _cli(env, "models", "export", "exported:1", "--format", "onnx")
    assert done.returncode == 0 and "exported:1 now has: pt, onnx" in done.stderr, done.stderr
    version = client.model("exported").versions[0]
    onnx = version.file("onnx")
    assert onnx.sha256 != version.sha256 and onnx.key.endswith(".onnx")

    worker_env = {
        **stack_env,
        "YOLOQ_MODEL": "exported:1",
        "YOLOQ_MODEL_FORMAT": "onnx",
        "YOLOQ_MAX_BATCH": "2",
        "YOLOQ_METRICS_PORT": "0",
    }
    with ProcessGroup(tmp_path / "logs") as group:
        argv = yoloq_argv("worker", "--device", "cpu", "--name", "onnx-worker")
        process = group.start("onnx-worker", argv, worker_env)

        def serving_onnx() -> bool:
            return any(
                m.id == "exported:1" and m.format == "onnx"
                for w in job_store.live_workers(5)
                if w.name == "onnx-worker" and w.warmed
                for m in w.models
            )

        group.wait_ready(process, serving_onnx, timeout_s=180)
        items = _run(client, _images(object_store, 4), "exported:1")
    # The record says which file ran: the export's, of version 1.
    assert {(i.model, i.version, i.sha256) for i in items} == {("exported", 1, onnx.sha256)}
    assert sum(len(detections_of(i)) for i in items) >= 4


def test_an_int8_openvino_export_calibrated_on_s3_images_serves_its_version(
    client: Client,
    object_store: ObjectStore,
    stack_env: dict[str, str],
    job_store: JobStore,
    model_path: Path,
    shapes_dataset: Path,
    tmp_path: Path,
) -> None:
    import os

    prefix = f"calibration-{uuid.uuid4().hex[:8]}/"
    for image in sorted((shapes_dataset.parent / "images" / "train").glob("*.jpg")):
        object_store.put(INPUT_BUCKET, prefix + image.name, image.read_bytes())
    env = {**os.environ, **stack_env}
    done = _cli(env, "models", "push", str(model_path), "--name", "fast")
    assert done.returncode == 0 and done.stdout.strip() == "fast:1", done.stderr
    calibration = f"s3://{INPUT_BUCKET}/{prefix}"
    done = _cli(
        env,
        *("models", "export", "fast:1", "--format", "openvino", "--int8"),
        *("--calibration", calibration, "--calibration-images", "24"),
        *("--data", str(shapes_dataset)),
    )
    assert done.returncode == 0 and "fast:1 now has: pt, openvino-int8" in done.stderr, done.stderr
    assert "accuracy: mAP@0.5" in done.stderr
    file = client.model("fast").versions[0].file("openvino-int8")
    assert file.key.endswith("weights.openvino-int8.tar") and file.precision == "int8"
    assert file.accuracy is not None and file.accuracy.loss_points <= file.accuracy.max_loss

    worker_env = {
        **stack_env,
        "YOLOQ_MODEL": "fast:1",
        "YOLOQ_MODEL_FORMAT": "openvino-int8",
        "YOLOQ_MAX_BATCH": "2",
        "YOLOQ_METRICS_PORT": "0",
    }
    with ProcessGroup(tmp_path / "logs") as group:
        argv = yoloq_argv("worker", "--device", "cpu", "--name", "openvino-worker")
        process = group.start("openvino-worker", argv, worker_env)

        def serving_int8() -> bool:
            return any(
                (m.id, m.format, m.precision) == ("fast:1", "openvino-int8", "int8")
                for w in job_store.live_workers(5)
                if w.name == "openvino-worker" and w.warmed
                for m in w.models
            )

        group.wait_ready(process, serving_int8, timeout_s=180)
        items = _run(client, _images(object_store, 4), "fast:1")
    # Each result names the export that ran it: its digest, format and precision.
    assert {(i.model, i.version, i.sha256, i.format, i.precision) for i in items} == {
        ("fast", 1, file.sha256, "openvino-int8", "int8")
    }
    assert sum(len(detections_of(i)) for i in items) >= 4
