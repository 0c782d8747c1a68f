"""What a job returns for each image: one item type per Ultralytics task.

An item is a tagged union on ``task``: ``detect`` items hold boxes, ``segment`` boxes
with masks, ``pose`` boxes with keypoints, ``obb`` rotated boxes, ``classify`` the best
classes. Every coordinate is in original-image pixels, and every item names the model
version and the weights (SHA-256) that produced it.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from yoloq.catalog import Task
from yoloq.schemas import ItemErrorCode

Point = Annotated[list[float], Field(min_length=2, max_length=2, description="x, y")]


class Detection(BaseModel):
    class_id: int
    class_name: str
    confidence: float
    box: list[float] = Field(
        min_length=4,
        max_length=4,
        description="x1, y1, x2, y2 in original-image pixels (OBB: the rotated box's bounds).",
    )


class MaskPart(BaseModel):
    """One connected part of a mask: its outer outline and the holes in it."""

    outline: list[Point]
    holes: list[list[Point]] = Field(default_factory=list)


class Rle(BaseModel):
    """COCO's uncompressed run-length encoding of a mask at the original image's size:
    runs of 0s and 1s, alternating from 0s, over the pixels in column-major order."""

    size: list[int] = Field(description="height, width")
    counts: list[int]


class Mask(BaseModel):
    parts: list[MaskPart] = Field(description="Every separate part, holes kept.")
    area: float = Field(description="Pixels covered, in the original image.")
    rle: Rle | None = Field(default=None, description="With params.masks = 'rle'.")


class SegmentDetection(Detection):
    mask: Mask


class Keypoint(BaseModel):
    name: str | None = Field(default=None, description="From the model's keypoint names.")
    x: float
    y: float
    confidence: float | None = Field(
        default=None, description="Visibility; null for models trained without it."
    )


class PoseDetection(Detection):
    keypoints: list[Keypoint]


class RotatedBox(BaseModel):
    """An oriented box, as Ultralytics' ``Results.obb``."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float = Field(description="Rotation in radians, as Ultralytics' xywhr.")
    corners: list[Point] = Field(min_length=4, max_length=4, description="The four corners.")


class ObbDetection(Detection):
    rotated_box: RotatedBox


class ClassScore(BaseModel):
    class_id: int
    class_name: str
    confidence: float


class ItemError(BaseModel):
    code: ItemErrorCode
    message: str


class ItemTimings(BaseModel):
    """Where an image's time went, in seconds."""

    queue_s: float | None = Field(default=None, description="Its chunk waiting in the queue.")
    download_s: float | None = None
    decode_s: float | None = Field(
        default=None, description="Decoding and letterboxing to the model's input."
    )
    batch_wait_s: float | None = Field(
        default=None, description="Decoded, waiting for the batch it ran in to start and end."
    )
    inference_s: float | None = Field(default=None, description="The model call of its batch.")
    batch_images: int | None = Field(default=None, description="Images in that batch.")


class ItemBase(BaseModel):
    index: int = Field(description="Position of the image in the submitted list.")
    bucket: str
    key: str
    status: Literal["ok", "error"]
    model: str | None = Field(default=None, description="The model that ran it.")
    version: int | None = Field(default=None, description="Its version (null: a weights file).")
    sha256: str | None = Field(default=None, description="SHA-256 of the weights that ran it.")
    format: str | None = Field(
        default=None, description="Their format: pt, onnx, openvino, openvino-int8, ..."
    )
    precision: str | None = Field(
        default=None, description="What they ran in: fp32, fp16, bf16 or int8."
    )
    width: int | None = None
    height: int | None = None
    error: ItemError | None = None
    timings: ItemTimings | None = None


class DetectItem(ItemBase):
    task: Literal["detect"] = "detect"
    detections: list[Detection] = Field(default_factory=list)


class SegmentItem(ItemBase):
    task: Literal["segment"] = "segment"
    detections: list[SegmentDetection] = Field(default_factory=list)


class PoseItem(ItemBase):
    task: Literal["pose"] = "pose"
    detections: list[PoseDetection] = Field(default_factory=list)


class ObbItem(ItemBase):
    task: Literal["obb"] = "obb"
    detections: list[ObbDetection] = Field(default_factory=list)


class ClassifyItem(ItemBase):
    task: Literal["classify"] = "classify"
    classes: list[ClassScore] = Field(
        default_factory=list, description="The best top_k classes, best first."
    )


ResultItem = Annotated[
    DetectItem | SegmentItem | PoseItem | ObbItem | ClassifyItem, Field(discriminator="task")
]
"""One image's result: the item type of its model's task."""

ITEM_TYPES: dict[Task, type[ItemBase]] = {
    Task.DETECT: DetectItem,
    Task.SEGMENT: SegmentItem,
    Task.POSE: PoseItem,
    Task.OBB: ObbItem,
    Task.CLASSIFY: ClassifyItem,
}

_ITEM: TypeAdapter[ResultItem] = TypeAdapter(ResultItem)


def parse_item(raw: str | bytes) -> ResultItem:
    """An item as stored; one stored before items named their task is a detect item."""
    data = json.loads(raw)
    data.setdefault("task", Task.DETECT.value)
    return _ITEM.validate_python(data)


def new_item(task: Task, **fields: object) -> ResultItem:
    item = ITEM_TYPES[task].model_validate(fields)
    assert isinstance(item, DetectItem | SegmentItem | PoseItem | ObbItem | ClassifyItem)
    return item


def detections_of(item: ResultItem) -> list[Detection]:
    """The objects found in an image; none for a classify item."""
    return [] if isinstance(item, ClassifyItem) else list(item.detections)


class DetectResult(BaseModel):
    """``POST /v1/detect``'s answer: the image's item, and the job that ran it."""

    job_id: str = Field(description="The one-image job; GET /v1/jobs/{job_id} shows it.")
    item: ResultItem


class ResultsPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "index": 0,
                            "bucket": "images",
                            "key": "line-3/cam-1/000123.jpg",
                            "status": "ok",
                            "task": "detect",
                            "model": "parts",
                            "version": 7,
                            "sha256": "9f2c...e1",
                            "format": "openvino-int8",
                            "precision": "int8",
                            "width": 1280,
                            "height": 720,
                            "detections": [
                                {
                                    "class_id": 0,
                                    "class_name": "circle",
                                    "confidence": 0.91,
                                    "box": [412.5, 188.0, 530.25, 301.75],
                                }
                            ],
                            "error": None,
                        },
                        {
                            "index": 1,
                            "bucket": "images",
                            "key": "line-3/cam-1/000124.jpg",
                            "status": "error",
                            "task": "detect",
                            "model": "parts",
                            "version": 7,
                            "detections": [],
                            "error": {"code": "decode_failed", "message": "the image is truncated"},
                        },
                        {
                            "index": 2,
                            "bucket": "images",
                            "key": "line-3/cam-2/000125.jpg",
                            "status": "ok",
                            "task": "segment",
                            "model": "parts-seg",
                            "version": 3,
                            "width": 640,
                            "height": 480,
                            "detections": [
                                {
                                    "class_id": 1,
                                    "class_name": "square",
                                    "confidence": 0.88,
                                    "box": [100.0, 80.0, 180.0, 160.0],
                                    "mask": {
                                        "parts": [
                                            {
                                                "outline": [
                                                    [100.0, 80.0],
                                                    [180.0, 80.0],
                                                    [180.0, 160.0],
                                                    [100.0, 160.0],
                                                ],
                                                "holes": [],
                                            }
                                        ],
                                        "area": 6400.0,
                                    },
                                }
                            ],
                        },
                        {
                            "index": 3,
                            "bucket": "images",
                            "key": "cell-2/arm/000126.jpg",
                            "status": "ok",
                            "task": "pose",
                            "model": "robot-pose",
                            "version": 1,
                            "detections": [
                                {
                                    "class_id": 0,
                                    "class_name": "part",
                                    "confidence": 0.9,
                                    "box": [10.0, 10.0, 50.0, 50.0],
                                    "keypoints": [
                                        {"name": "tip", "x": 12.5, "y": 11.0, "confidence": 0.97}
                                    ],
                                }
                            ],
                        },
                        {
                            "index": 4,
                            "bucket": "images",
                            "key": "aerial/tile-9.jpg",
                            "status": "ok",
                            "task": "obb",
                            "model": "aerial-obb",
                            "version": 2,
                            "detections": [
                                {
                                    "class_id": 0,
                                    "class_name": "truck",
                                    "confidence": 0.8,
                                    "box": [90.0, 40.0, 150.0, 100.0],
                                    "rotated_box": {
                                        "cx": 120.0,
                                        "cy": 70.0,
                                        "width": 60.0,
                                        "height": 30.0,
                                        "angle": 0.5236,
                                        "corners": [[90, 40], [150, 75], [140, 100], [95, 60]],
                                    },
                                }
                            ],
                        },
                        {
                            "index": 5,
                            "bucket": "images",
                            "key": "line-1/part-77.jpg",
                            "status": "ok",
                            "task": "classify",
                            "model": "pass-fail",
                            "version": 4,
                            "classes": [
                                {"class_id": 1, "class_name": "pass", "confidence": 0.97},
                                {"class_id": 0, "class_name": "fail", "confidence": 0.03},
                            ],
                        },
                    ],
                    "next_offset": 6,
                }
            ]
        }
    )

    items: list[ResultItem]
    next_offset: int | None = Field(
        description="Offset of the next page; null once every item has been returned."
    )
