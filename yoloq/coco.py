"""Results as COCO JSON (images, annotations, categories): boxes, segment masks and
pose keypoints, in COCO's results conventions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from yoloq.results import (
    ObbDetection,
    PoseDetection,
    ResultItem,
    SegmentDetection,
    detections_of,
)


def to_coco(items: Iterable[ResultItem]) -> dict[str, Any]:
    """Image ids are the items' indexes; boxes become ``[x, y, width, height]``.

    A segment mask becomes its RLE when the job asked for one (``params.masks = "rle"``),
    else one polygon per part (COCO polygons cannot hold holes: ask for RLE to keep
    them). An OBB box becomes the polygon of its four corners. Keypoints are ``[x, y,
    confidence, ...]``, the results form of COCO's ``[x, y, v, ...]``. Failed items, and
    classify items, are listed as images without annotations.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[int, dict[str, Any]] = {}
    for item in items:
        images.append(
            {"id": item.index, "file_name": item.key, "width": item.width, "height": item.height}
        )
        for detection in detections_of(item):
            x1, y1, x2, y2 = detection.box
            category = categories.setdefault(
                detection.class_id, {"id": detection.class_id, "name": detection.class_name}
            )
            annotation: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": item.index,
                "category_id": detection.class_id,
                "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2),
                "score": detection.confidence,
                "iscrowd": 0,
            }
            if isinstance(detection, SegmentDetection):
                mask = detection.mask
                annotation["area"] = mask.area
                if mask.rle is not None:
                    annotation["segmentation"] = mask.rle.model_dump()
                else:
                    annotation["segmentation"] = [
                        [v for point in part.outline for v in point] for part in mask.parts
                    ]
            elif isinstance(detection, ObbDetection):
                corners = detection.rotated_box.corners
                annotation["segmentation"] = [[v for point in corners for v in point]]
            elif isinstance(detection, PoseDetection):
                points = detection.keypoints
                annotation["keypoints"] = [
                    v
                    for k in points
                    for v in (k.x, k.y, 1.0 if k.confidence is None else k.confidence)
                ]
                annotation["num_keypoints"] = sum(
                    1 for k in points if k.confidence is None or k.confidence >= 0.5
                )
                category.setdefault("keypoints", [k.name or str(i) for i, k in enumerate(points)])
            annotations.append(annotation)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [categories[i] for i in sorted(categories)],
    }
