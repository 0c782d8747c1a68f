"""Drawing detections onto local images, for ``yoloq submit --annotate``."""

from __future__ import annotations

from pathlib import Path

from yoloq.schemas import ResultItem


def annotate(source: Path, item: ResultItem, out_dir: Path) -> Path:
    """Write ``source`` with its boxes and labels drawn to ``out_dir``; returns the path."""
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
    for detection in item.detections:
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        hue = (detection.class_id * 47) % 180  # a colour per class, the same in every image
        hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
        colour = [int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0][0]]
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        label = f"{detection.class_name} {detection.confidence:.2f}"
        origin = (x1, max(12, y1 - 4))
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image, label, origin, font, 0.4 * thickness, colour, thickness)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / source.name
    cv2.imwrite(str(path), image)
    return path
