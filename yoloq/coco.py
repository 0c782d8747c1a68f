"""Results as COCO detection JSON (images, annotations, categories)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from yoloq.schemas import ResultItem


def to_coco(items: Iterable[ResultItem]) -> dict[str, Any]:
    """Image ids are the items' indexes; boxes become ``[x, y, width, height]``; failed
    items are listed as images without annotations."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, str] = {}
    for item in items:
        images.append(
            {"id": item.index, "file_name": item.key, "width": item.width, "height": item.height}
        )
        for detection in item.detections:
            x1, y1, x2, y2 = detection.box
            categories[detection.class_id] = detection.class_name
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": item.index,
                    "category_id": detection.class_id,
                    "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "score": detection.confidence,
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in sorted(categories.items())],
    }
