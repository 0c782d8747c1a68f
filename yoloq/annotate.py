"""Drawing results onto local images, for ``yoloq submit --annotate``: boxes, segment
masks, pose keypoints, rotated boxes, or a classify model's best class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloq.results import (
    ClassifyItem,
    Detection,
    ObbDetection,
    PoseDetection,
    ResultItem,
    SegmentDetection,
    detections_of,
)


def _colour(cv2: Any, np: Any, class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180  # a colour per class, the same in every image
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = (int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0][0])
    return b, g, r


def _draw(cv2: Any, np: Any, image: Any, detection: Detection, thickness: int) -> None:
    colour = _colour(cv2, np, detection.class_id)
    x1, y1, x2, y2 = (round(v) for v in detection.box)
    if isinstance(detection, SegmentDetection):
        # The mask tinted at half strength, holes left clear, then its outlines.
        covered = np.zeros(image.shape[:2], dtype=np.uint8)
        for part in detection.mask.parts:
            cv2.fillPoly(covered, [_points(np, part.outline)], 1)
            for hole in part.holes:
                cv2.fillPoly(covered, [_points(np, hole)], 0)
        where = covered.astype(bool)
        image[where] = (0.5 * image[where] + 0.5 * np.array(colour)).astype(np.uint8)
        for part in detection.mask.parts:
            rings = [_points(np, ring) for ring in (part.outline, *part.holes)]
            cv2.polylines(image, rings, True, colour, thickness)
    elif isinstance(detection, ObbDetection):
        cv2.polylines(image, [_points(np, detection.rotated_box.corners)], True, colour, thickness)
    else:
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    if isinstance(detection, PoseDetection):
        for keypoint in detection.keypoints:
            if keypoint.confidence is None or keypoint.confidence >= 0.5:
                centre = (round(keypoint.x), round(keypoint.y))
                cv2.circle(image, centre, 2 * thickness + 1, colour, -1)
    label = f"{detection.class_name} {detection.confidence:.2f}"
    cv2.putText(
        image,
        label,
        (x1, max(12, y1 - 4)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4 * thickness,
        colour,
        thickness,
    )


def _points(np: Any, ring: list[list[float]]) -> Any:
    return np.round(np.array(ring)).astype(np.int32)


def annotate(source: Path, item: ResultItem, out_dir: Path) -> Path:
    """Write ``source`` with its results drawn to ``out_dir``; returns the path."""
    try:
        # OpenCV is a worker dependency; a client without it can still submit and read.
        import cv2
        import numpy as np
    except ImportError as error:
        raise RuntimeError("--annotate needs OpenCV: pip install 'yoloq[worker]'") from error
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read {source} to annotate it")
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for detection in detections_of(item):
        _draw(cv2, np, image, detection, thickness)
    if isinstance(item, ClassifyItem) and item.classes:
        best = item.classes[0]
        label = f"{best.class_name} {best.confidence:.2f}"
        colour = _colour(cv2, np, best.class_id)
        cv2.putText(
            image,
            label,
            (6, 18 * thickness),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * thickness,
            colour,
            thickness + 1,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / source.name
    cv2.imwrite(str(path), image)
    return path
