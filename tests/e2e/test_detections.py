"""The fixture detector through the whole service: ground truth and lab parity.

The images are drawn by ``scripts/make_shapes_dataset.py`` from seeds the model never saw
in training, so every box has a known right answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from scripts.make_shapes_dataset import generate_image
from tests.conftest import API_KEY, INPUT_BUCKET
from tests.exif import with_orientation
from tests.image_factory import encode
from yoloq.client import Client
from yoloq.evaluation import Score, Truth, score
from yoloq.object_store import ObjectStore
from yoloq.results import Detection, ResultItem, detections_of
from yoloq.schemas import ImageRef, InferenceParams, JobStatus

HELD_OUT_SEED = 5000  # training used seeds 0 (train) and 1 (validation)


@pytest.fixture(scope="module")
def client(api_url: str, worker: str) -> Iterator[Client]:
    with Client(api_url, api_key=API_KEY) as api_client:
        yield api_client


def _run_job(
    client: Client, store: ObjectStore, blobs: list[bytes], params: InferenceParams | None = None
) -> list[ResultItem]:
    refs = []
    for data in blobs:
        key = f"detections/{uuid.uuid4().hex}"
        store.put(INPUT_BUCKET, key, data)
        refs.append(ImageRef(bucket=INPUT_BUCKET, key=key))
    accepted = client.submit(refs, params)
    job = client.wait(accepted.id, timeout_s=300)
    assert job.status == JobStatus.SUCCEEDED, job
    return list(client.results(accepted.id))


def test_detections_match_ground_truth(client: Client, object_store: ObjectStore) -> None:
    drawn = [generate_image(HELD_OUT_SEED + i) for i in range(32)]
    assert any(img.shape[0] != img.shape[1] for img, _ in drawn)
    # Trained at 256, the fixture sees best at 320 (held-out mAP@0.5 0.99; see its JSON).
    params = InferenceParams(imgsz=320)
    items = _run_job(client, object_store, [encode(img, ".jpg") for img, _ in drawn], params)

    total = Score()
    for item, (image, boxes) in zip(items, drawn, strict=True):
        height, width = image.shape[:2]
        assert (item.width, item.height) == (width, height)
        for detection in detections_of(item):  # original-image pixels, not the letterbox
            x1, y1, x2, y2 = detection.box
            assert -1 <= x1 < x2 <= width + 1 and -1 <= y1 < y2 <= height + 1
        truths = [Truth(c, (x1, y1, x2, y2)) for c, x1, y1, x2, y2 in boxes]
        total.add(score(detections_of(item), truths, min_iou=0.5))
    print(f"ground truth: precision {total.precision:.3f}, recall {total.recall:.3f} ({total})")
    assert total.true_positives + total.false_negatives >= 60  # enough objects to mean something
    assert total.precision >= 0.9, total
    assert total.recall >= 0.9, total


def _rgba(image: np.ndarray[Any, Any]) -> bytes:
    rgba = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 255
    return encode(rgba, ".png")


VARIANTS: dict[str, Callable[[np.ndarray[Any, Any]], bytes]] = {
    "jpeg": lambda img: encode(img, ".jpg"),
    "png": lambda img: encode(img, ".png"),
    "grayscale": lambda img: encode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), ".png"),
    "rgba": _rgba,
    "png16": lambda img: encode(img.astype(np.uint16) * 257, ".png"),
    "exif-rotated": lambda img: with_orientation(encode(img, ".jpg"), 6),
}


def _reference(
    model_path: Path, data: bytes, suffix: str, tmp: Path, params: InferenceParams
) -> list[Detection]:
    """What a user gets in the lab: ``YOLO(weights).predict(file)``, in this process."""
    from workers.model import configure_offline

    configure_offline(tmp / "ultralytics")
    from ultralytics.models import YOLO

    path = tmp / f"reference{suffix}"
    path.write_bytes(data)
    model = YOLO(str(model_path))
    options: dict[str, Any] = {"conf": params.conf, "iou": params.iou, "max_det": params.max_det}
    if params.imgsz:  # left out when unset: Ultralytics' own default, the training size
        options["imgsz"] = params.imgsz
    results: Any = model.predict(str(path), device="cpu", verbose=False, **options)
    result = results[0]
    names = result.names
    return [
        Detection(
            class_id=int(c),
            class_name=names[int(c)],
            confidence=float(p),
            box=[float(v) for v in b],
        )
        for b, p, c in zip(
            result.boxes.xyxy.tolist(),
            result.boxes.conf.tolist(),
            result.boxes.cls.tolist(),
            strict=True,
        )
    ]


def test_service_returns_what_the_lab_sees(
    client: Client, object_store: ObjectStore, model_path: Path, tmp_path: Path
) -> None:
    image, _ = generate_image(HELD_OUT_SEED + 100, size=(720, 480))
    blobs = {name: make(image) for name, make in VARIANTS.items()}
    params = InferenceParams(conf=0.25)
    items = _run_job(client, object_store, list(blobs.values()), params)

    worst_box, worst_conf = 0.0, 0.0
    for (name, data), item in zip(blobs.items(), items, strict=True):
        suffix = ".jpg" if name in ("jpeg", "exif-rotated") else ".png"
        expected = _reference(model_path, data, suffix, tmp_path, params)
        got = sorted(detections_of(item), key=lambda d: -d.confidence)
        expected = sorted(expected, key=lambda d: -d.confidence)
        assert expected, f"{name}: the reference found nothing; the comparison would be empty"
        assert [d.class_id for d in got] == [d.class_id for d in expected], name
        for mine, theirs in zip(got, expected, strict=True):
            worst_box = max(
                worst_box, *(abs(a - b) for a, b in zip(mine.box, theirs.box, strict=True))
            )
            worst_conf = max(worst_conf, abs(mine.confidence - theirs.confidence))
    assert worst_box <= 0.5, worst_box
    assert worst_conf <= 1e-3, worst_conf
    print(f"parity: worst box difference {worst_box:.4f} px, confidence {worst_conf:.2e}")

    # EXIF orientation 6 (rotate 90° clockwise) is applied: the image is seen upright.
    rotated = items[list(blobs).index("exif-rotated")]
    assert (rotated.width, rotated.height) == (480, 720)
