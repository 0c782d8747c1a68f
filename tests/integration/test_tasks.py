"""Every Ultralytics task through the worker's own inference path, against Ultralytics.

The worker letterboxes (or for classify resizes and crops) on I/O threads, batches across
images and postprocesses each task itself (``workers.postprocess``); here a batch of
held-out shapes images must give what ``YOLO(weights).predict`` gives for each alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from scripts.make_shapes_dataset import generate_image
from tests.conftest import FIXTURES
from workers.device import parse_device
from workers.model import Detector, configure_offline
from workers.postprocess import Prediction
from yoloq.catalog import Task
from yoloq.results import Mask, ObbDetection, PoseDetection, Rle, SegmentDetection
from yoloq.schemas import InferenceParams

HELD_OUT_SEED = 7000
WEIGHTS = {
    Task.SEGMENT: FIXTURES / "shapes_yolov8n-seg.pt",
    Task.POSE: FIXTURES / "shapes_yolov8n-pose.pt",
    Task.OBB: FIXTURES / "shapes_yolov8n-obb.pt",
    Task.CLASSIFY: FIXTURES / "shapes_yolov8n-cls.pt",
}


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory) -> None:
    configure_offline(tmp_path_factory.mktemp("ultralytics"))


def _images(count: int, square_crops: bool = False) -> list[np.ndarray]:
    images = []
    for i in range(count):
        image, boxes = generate_image(HELD_OUT_SEED + i)
        if square_crops and boxes:  # a classify model sees one shape per image
            _, x1, y1, x2, y2 = boxes[0]
            image = image[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1].copy()
        images.append(image)
    return images


def _served_and_lab(
    task: Task, images: list[np.ndarray], params: InferenceParams
) -> tuple[list[Prediction], list[Any]]:
    detector = Detector(WEIGHTS[task], parse_device("cpu"))
    assert detector.task is task
    served = _batched(detector, images, params)
    from ultralytics.models import YOLO

    lab = YOLO(str(WEIGHTS[task]))
    size: dict[str, Any] = {"imgsz": params.imgsz} if params.imgsz else {}
    expected = [
        next(iter(lab.predict(image, conf=params.conf, verbose=False, **size))) for image in images
    ]
    return served, expected


def _batched(detector: Detector, images: list[np.ndarray], params: InferenceParams) -> list[Any]:
    """As the batcher runs them: prepared one by one, then one model call per input shape."""
    prepared = [detector.prepare(image, params) for image in images]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, item in enumerate(prepared):
        by_shape.setdefault(item.pixels.shape, []).append(index)
    assert any(len(group) > 1 for group in by_shape.values()), "no batch of more than one"
    results: list[Any] = [None] * len(images)
    for group in by_shape.values():
        for index, prediction in zip(
            group, detector.predict_prepared([prepared[i] for i in group], params), strict=True
        ):
            results[index] = prediction
    return results


def _assert_boxes(prediction: Prediction, boxes: Any) -> None:
    assert len(prediction.detections) == len(boxes)
    for detection, box, conf, cls in zip(
        prediction.detections,
        boxes.xyxy.tolist(),
        boxes.conf.tolist(),
        boxes.cls.tolist(),
        strict=True,
    ):
        assert detection.class_id == int(cls)
        assert detection.confidence == pytest.approx(conf, abs=1e-3)
        assert detection.box == pytest.approx(box, abs=0.05)


def _area(outlines: list[list[list[float]]], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    for outline in outlines:
        points = np.round(np.array(outline, dtype=np.float32)).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1)
    return canvas.astype(bool)


def _mask_area(mask: Mask, shape: tuple[int, int]) -> np.ndarray:
    filled = _area([part.outline for part in mask.parts], shape)
    holes = _area([hole for part in mask.parts for hole in part.holes], shape)
    return np.asarray(filled & ~holes)


def _rle_bitmap(rle: Rle) -> np.ndarray:
    height, width = rle.size
    flat = np.zeros(height * width, dtype=bool)
    at = 0
    for run, value in zip(rle.counts, itertools.cycle((False, True)), strict=False):
        flat[at : at + run] = value
        at += run
    return flat.reshape(width, height).T  # column-major


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_segment_masks_match_ultralytics() -> None:
    from ultralytics.utils import ops

    images = _images(12)
    served, lab = _served_and_lab(Task.SEGMENT, images, InferenceParams(imgsz=320, masks="rle"))
    assert sum(len(p.detections) for p in served) > 10
    pixels, outlines = [], []
    for prediction, result, image in zip(served, lab, images, strict=True):
        _assert_boxes(prediction, result.boxes)
        shape = image.shape[:2]
        if result.masks is None:
            assert prediction.detections == []
            continue
        # Ultralytics' masks at the model input, scaled to the image as the RLE is.
        theirs = ops.scale_masks(result.masks.data[None].float(), shape)[0].numpy() > 0.5
        for detection, their_mask in zip(prediction.detections, theirs, strict=True):
            assert isinstance(detection, SegmentDetection)
            assert detection.mask.parts and detection.mask.rle is not None
            ours = _rle_bitmap(detection.mask.rle)
            pixels.append(_iou(ours, their_mask))
            # The polygons (holes cut out) outline the same pixels.
            outlines.append(_iou(_mask_area(detection.mask, shape), ours))
            assert detection.mask.area == float(ours.sum())
    assert min(pixels) >= 0.99, pixels
    # Outlines trace pixel centres, so a small shape loses part of its edge pixels.
    assert min(outlines) > 0.85 and float(np.mean(outlines)) > 0.93, outlines


def test_a_mask_keeps_its_holes_and_its_parts() -> None:
    """A ring and two separate blobs: the outline of each part, the hole inside the ring."""
    from workers.postprocess import _mask

    bitmap = np.zeros((64, 64), dtype=np.uint8)
    cv2.circle(bitmap, (20, 20), 14, 1, thickness=-1)
    cv2.circle(bitmap, (20, 20), 6, 0, thickness=-1)
    cv2.rectangle(bitmap, (44, 44), (58, 58), 1, thickness=-1)
    mask = _mask(bitmap, (64, 64), (128, 128), None)  # the image is twice the input
    assert len(mask.parts) == 2
    ring = max(mask.parts, key=lambda part: len(part.outline))
    square = min(mask.parts, key=lambda part: len(part.outline))
    assert len(ring.holes) == 1 and square.holes == []
    xs = [x for x, _ in square.outline]
    assert (min(xs), max(xs)) == (88.0, 116.0)  # 44 and 58, scaled by two
    expected = 4 * (np.pi * 14**2 - np.pi * 6**2) + 4 * 14 * 14
    assert abs(mask.area - expected) / expected < 0.1


def test_pose_keypoints_match_ultralytics() -> None:
    images = _images(12)
    served, lab = _served_and_lab(Task.POSE, images, InferenceParams(imgsz=320))
    assert sum(len(p.detections) for p in served) > 3
    for prediction, result in zip(served, lab, strict=True):
        _assert_boxes(prediction, result.boxes)
        for detection, points in zip(
            prediction.detections, result.keypoints.data.tolist(), strict=True
        ):
            assert isinstance(detection, PoseDetection)
            assert [k.name for k in detection.keypoints] == [
                "top_left",
                "top_right",
                "bottom_right",
                "bottom_left",
            ]
            for keypoint, (x, y, visible) in zip(detection.keypoints, points, strict=True):
                assert (keypoint.x, keypoint.y) == pytest.approx((x, y), abs=0.05)
                assert keypoint.confidence == pytest.approx(visible, abs=1e-3)


def test_obb_rotated_boxes_match_ultralytics() -> None:
    images = _images(12)
    served, lab = _served_and_lab(Task.OBB, images, InferenceParams(imgsz=320))
    assert sum(len(p.detections) for p in served) > 10
    for prediction, result in zip(served, lab, strict=True):
        obb = result.obb
        assert len(prediction.detections) == len(obb)
        for detection, xywhr, corners, bounds, conf in zip(
            prediction.detections,
            obb.xywhr.tolist(),
            obb.xyxyxyxy.tolist(),
            obb.xyxy.tolist(),
            obb.conf.tolist(),
            strict=True,
        ):
            assert isinstance(detection, ObbDetection)
            rotated = detection.rotated_box
            got = (rotated.cx, rotated.cy, rotated.width, rotated.height, rotated.angle)
            assert got == pytest.approx(xywhr, abs=0.05)
            flat = [v for corner in rotated.corners for v in corner]
            assert flat == pytest.approx([v for corner in corners for v in corner], abs=0.05)
            assert detection.box == pytest.approx(bounds, abs=0.05)
            assert detection.confidence == pytest.approx(conf, abs=1e-3)


def test_classify_top_classes_match_ultralytics() -> None:
    images = _images(8, square_crops=True)
    params = InferenceParams(top_k=5)
    served, lab = _served_and_lab(Task.CLASSIFY, images, params)
    for prediction, result in zip(served, lab, strict=True):
        assert prediction.detections == []
        # Four classes: top-5 is all of them, in Ultralytics' order.
        assert prediction.classes is not None and len(prediction.classes) == 4
        assert [c.class_id for c in prediction.classes] == result.probs.top5
        assert prediction.classes[0].confidence == pytest.approx(
            float(result.probs.top1conf), abs=1e-3
        )


def test_classify_names_the_drawn_shape() -> None:
    """Ground truth, not only parity: the crop of a drawn shape is classified as it."""
    detector = Detector(WEIGHTS[Task.CLASSIFY], parse_device("cpu"))
    right = total = 0
    for i in range(24):
        image, boxes = generate_image(HELD_OUT_SEED + 100 + i)
        for class_id, x1, y1, x2, y2 in boxes[:2]:
            crop = image[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1].copy()
            if min(crop.shape[:2]) < 16:
                continue
            best = detector.predict_batch([crop], InferenceParams())[0].classes
            assert best is not None
            # The detector's class ids and the classifier's (ImageFolder, alphabetical)
            # differ; compare names.
            detector_names = ["circle", "square", "triangle", "star"]
            right += best[0].class_name == detector_names[class_id]
            total += 1
    assert total > 20 and right / total > 0.9, f"{right}/{total} crops named right"


def test_weights_of_every_task_load(tmp_path: Path) -> None:
    for task, weights in WEIGHTS.items():
        assert Detector(weights, parse_device("cpu")).task is task
