"""The result items of every task: parsing (old records included), COCO, drawing, and
the OpenAPI schema's tagged union."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from api.main import create_app
from yoloq.annotate import annotate
from yoloq.coco import to_coco
from yoloq.results import (
    ClassifyItem,
    ClassScore,
    Detection,
    DetectItem,
    Keypoint,
    Mask,
    MaskPart,
    ObbDetection,
    ObbItem,
    PoseDetection,
    PoseItem,
    ResultItem,
    Rle,
    RotatedBox,
    SegmentDetection,
    SegmentItem,
    parse_item,
)
from yoloq.settings import Settings

BOX: dict[str, Any] = {
    "class_id": 1,
    "class_name": "square",
    "confidence": 0.9,
    "box": [10.0, 10.0, 50.0, 50.0],
}
SQUARE = [[10.0, 10.0], [50.0, 10.0], [50.0, 50.0], [10.0, 50.0]]
HOLE = [[25.0, 25.0], [35.0, 25.0], [35.0, 35.0], [25.0, 35.0]]
COMMON: dict[str, Any] = {
    "bucket": "b",
    "status": "ok",
    "width": 64,
    "height": 64,
    "model": "m",
    "version": 1,
}


def _items() -> list[ResultItem]:
    mask = Mask(parts=[MaskPart(outline=SQUARE, holes=[HOLE])], area=1500.0)
    rle_mask = Mask(parts=[MaskPart(outline=SQUARE)], area=3.0, rle=Rle(size=[2, 2], counts=[1, 3]))
    return [
        DetectItem(index=0, key="d.jpg", detections=[Detection(**BOX)], **COMMON),
        SegmentItem(
            index=1,
            key="s.jpg",
            detections=[
                SegmentDetection(**BOX, mask=mask),
                SegmentDetection(**BOX, mask=rle_mask),
            ],
            **COMMON,
        ),
        PoseItem(
            index=2,
            key="p.jpg",
            detections=[
                PoseDetection(
                    **BOX,
                    keypoints=[
                        Keypoint(name="tl", x=10, y=10, confidence=0.9),
                        Keypoint(name="br", x=50, y=50, confidence=0.2),
                    ],
                )
            ],
            **COMMON,
        ),
        ObbItem(
            index=3,
            key="o.jpg",
            detections=[
                ObbDetection(
                    **BOX,
                    rotated_box=RotatedBox(
                        cx=30, cy=30, width=40, height=40, angle=0.0, corners=SQUARE
                    ),
                )
            ],
            **COMMON,
        ),
        ClassifyItem(
            index=4,
            key="c.jpg",
            classes=[ClassScore(class_id=0, class_name="pass", confidence=0.97)],
            **COMMON,
        ),
    ]


def test_items_round_trip_as_their_task() -> None:
    for item in _items():
        again = parse_item(item.model_dump_json())
        assert type(again) is type(item) and again == item


def test_a_record_from_before_tasks_is_a_detect_item() -> None:
    old = {"index": 0, "bucket": "b", "key": "k", "status": "ok", "detections": [BOX]}
    item = parse_item(json.dumps(old))
    assert isinstance(item, DetectItem) and item.detections[0].box == BOX["box"]
    assert item.model is None and item.sha256 is None


def test_coco_holds_boxes_masks_rotated_boxes_and_keypoints() -> None:
    coco = to_coco(_items())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    assert "segmentation" not in by_image[0][0] and "keypoints" not in by_image[0][0]
    polygons, rle = by_image[1]
    assert polygons["segmentation"] == [[10.0, 10.0, 50.0, 10.0, 50.0, 50.0, 10.0, 50.0]]
    assert polygons["area"] == 1500.0
    assert rle["segmentation"] == {"size": [2, 2], "counts": [1, 3]}
    [pose] = by_image[2]
    assert pose["keypoints"] == [10.0, 10.0, 0.9, 50.0, 50.0, 0.2]
    assert pose["num_keypoints"] == 1
    assert by_image[3][0]["segmentation"] == [[v for point in SQUARE for v in point]]
    assert 4 not in by_image  # a classify item has no annotation, but is an image
    assert [image["id"] for image in coco["images"]] == [0, 1, 2, 3, 4]
    [category] = coco["categories"]
    assert category["keypoints"] == ["tl", "br"]


def test_annotate_draws_every_task(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for item in _items():
        path = source / item.key
        cv2.imwrite(str(path), np.full((64, 64, 3), 255, dtype=np.uint8))
        drawn = cv2.imread(str(annotate(path, item, tmp_path / "out")))
        assert drawn is not None and (drawn != 255).any(), item.task
    holed = _items()[1]
    assert isinstance(holed, SegmentItem)
    holed = holed.model_copy(update={"key": "holed.jpg", "detections": holed.detections[:1]})
    path = source / "holed.jpg"
    cv2.imwrite(str(path), np.full((64, 64, 3), 255, dtype=np.uint8))
    segment = cv2.imread(str(annotate(path, holed, tmp_path / "out")))
    assert segment is not None
    # Inside the mask tinted, inside its hole left white.
    assert segment[18, 40].min() < 200 and segment[30, 30].min() > 240


def test_the_openapi_schema_tags_items_by_task() -> None:
    schema = create_app(Settings(auth_disabled=True)).openapi()
    items = schema["components"]["schemas"]["ResultsPage"]["properties"]["items"]["items"]
    assert items["discriminator"]["propertyName"] == "task"
    assert set(items["discriminator"]["mapping"]) == {
        "detect",
        "segment",
        "pose",
        "obb",
        "classify",
    }
