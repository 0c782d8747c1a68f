"""From a batch's raw model output to results, one function per Ultralytics task.

Each does what that task's Ultralytics predictor does after the forward pass (its NMS,
its scaling back to the original image), so the service returns what
``YOLO(weights).predict(image)`` returns in the lab, and then turns the tensors into the
result schema (``yoloq.schemas``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from yoloq.catalog import Task
from yoloq.results import (
    ClassScore,
    Detection,
    Keypoint,
    Mask,
    MaskPart,
    ObbDetection,
    PoseDetection,
    Rle,
    RotatedBox,
    SegmentDetection,
)
from yoloq.schemas import InferenceParams


@dataclass(frozen=True)
class Prediction:
    """One image's results: objects, or for a classify model its best classes."""

    detections: list[Detection]
    classes: list[ClassScore] | None = None


@dataclass(frozen=True)
class Head:
    """What the postprocessing needs to know of the model."""

    task: Task
    names: dict[int, str]
    end2end: bool = False
    keypoint_shape: tuple[int, ...] | None = None
    keypoint_names: list[str] | None = None


def postprocess(
    head: Head,
    raw: Any,
    input_shape: tuple[int, int],
    original_shapes: list[tuple[int, int]],
    params: InferenceParams,
) -> list[Prediction]:
    if head.task is Task.CLASSIFY:
        return _classify(head, raw, params)
    if head.task is Task.SEGMENT:
        # Ultralytics' SegmentationPredictor.postprocess: boxes with mask coefficients,
        # and the prototypes the masks are built from.
        boxes_raw = raw[0]
        protos = raw[0][1] if isinstance(raw[0], tuple) else raw[1]
        found = _nms(head, boxes_raw, params)
        return [
            Prediction(_segments(head, rows, proto, input_shape, shape, params.masks == "rle"))
            for rows, proto, shape in zip(found, protos, original_shapes, strict=True)
        ]
    found = _nms(head, raw, params)
    if head.task is Task.POSE:
        return [
            Prediction(_poses(head, rows, input_shape, shape))
            for rows, shape in zip(found, original_shapes, strict=True)
        ]
    if head.task is Task.OBB:
        return [
            Prediction(_oriented(head, rows, input_shape, shape))
            for rows, shape in zip(found, original_shapes, strict=True)
        ]
    return [
        Prediction(_boxes(head, rows, input_shape, shape))
        for rows, shape in zip(found, original_shapes, strict=True)
    ]


def _nms(head: Head, raw: Any, params: InferenceParams) -> list[Any]:
    from ultralytics.utils import nms

    found: list[Any] = nms.non_max_suppression(
        raw,
        params.conf,
        params.iou,
        params.classes,
        False,
        max_det=params.max_det,
        # As Ultralytics' DetectionPredictor: the class count for every task but detect
        # (whose extra columns, if any, are not classes).
        nc=0 if head.task is Task.DETECT else len(head.names),
        end2end=head.end2end,
        rotated=head.task is Task.OBB,
    )
    return found


def _detection(
    head: Head, row: list[float], kind: type[Detection] = Detection, **extra: Any
) -> Any:
    x1, y1, x2, y2, confidence, class_id = row[:6]
    return kind(
        class_id=int(class_id),
        class_name=head.names.get(int(class_id), str(int(class_id))),
        confidence=round(float(confidence), 6),
        box=[round(float(v), 2) for v in (x1, y1, x2, y2)],
        **extra,
    )


def _boxes(
    head: Head, rows: Any, input_shape: tuple[int, int], original: tuple[int, int]
) -> list[Detection]:
    from ultralytics.utils import ops

    # Rows of x1, y1, x2, y2, confidence, class: Ultralytics' Results.boxes layout.
    rows[:, :4] = ops.scale_boxes(input_shape, rows[:, :4], original)
    return [_detection(head, row) for row in rows[:, :6].float().cpu().numpy().tolist()]


def _segments(
    head: Head,
    rows: Any,
    proto: Any,
    input_shape: tuple[int, int],
    original: tuple[int, int],
    with_rle: bool,
) -> list[Detection]:
    from ultralytics.utils import ops

    if rows.shape[0] == 0:
        return []
    # Masks at the model's input size, cropped to their boxes, as Ultralytics builds them
    # without retina_masks; then the boxes are scaled to the original image.
    masks = ops.process_mask(proto, rows[:, 6:], rows[:, :4], input_shape, upsample=True)
    rows[:, :4] = ops.scale_boxes(input_shape, rows[:, :4], original)
    keep = masks.amax((-2, -1)) > 0  # Ultralytics drops detections whose mask is empty
    rows, masks = rows[keep], masks[keep]
    rles: list[Rle | None] = [None] * len(rows)
    if with_rle:
        full = ops.scale_masks(masks[None].float(), original)[0] > 0.5
        rles = [_rle(bitmap) for bitmap in full.cpu().numpy()]
    bitmaps = masks.byte().cpu().numpy()
    return [
        _detection(head, row, SegmentDetection, mask=_mask(bitmap, input_shape, original, rle))
        for row, bitmap, rle in zip(
            rows[:, :6].float().cpu().numpy().tolist(), bitmaps, rles, strict=True
        )
    ]


def _mask(
    bitmap: np.ndarray, input_shape: tuple[int, int], original: tuple[int, int], rle: Rle | None
) -> Mask:
    """A mask's parts, each its outer outline and its holes, in original-image pixels.

    Ultralytics' ``Results.masks.xy`` joins the parts into one polygon and drops holes;
    here each part stays its own polygon with its holes, as drawing tools and COCO expect.
    """
    import cv2
    from ultralytics.utils import ops

    # Two levels: outer outlines, and the holes inside each.
    contours, hierarchy = cv2.findContours(
        np.ascontiguousarray(bitmap), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )

    def scaled(contour: np.ndarray) -> np.ndarray:
        points = contour.reshape(-1, 2).astype(np.float32)
        return np.asarray(ops.scale_coords(input_shape, points, original, normalize=False))

    def rounded(points: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 1), round(float(y), 1)] for x, y in points]

    parts = []
    area = 0.0
    links = hierarchy[0] if hierarchy is not None else []
    for index, (_, _, first_hole, parent) in enumerate(links):
        if parent != -1 or len(contours[index]) < 3:
            continue
        outline = scaled(contours[index])
        holes = []
        area += float(cv2.contourArea(outline))
        hole = first_hole
        while hole != -1:
            if len(contours[hole]) >= 3:
                points = scaled(contours[hole])
                area -= float(cv2.contourArea(points))
                holes.append(rounded(points))
            hole = links[hole][0]
        parts.append(MaskPart(outline=rounded(outline), holes=holes))
    if rle is not None:
        area = float(sum(rle.counts[1::2]))
    return Mask(parts=parts, area=round(area, 1), rle=rle)


def _rle(bitmap: np.ndarray) -> Rle:
    """COCO's uncompressed RLE: run lengths over the pixels in column-major order,
    starting with a run of 0s (of length 0 if the first pixel is set)."""
    flat = np.asarray(bitmap, dtype=np.uint8).T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    counts = [int(run) for run in runs]
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return Rle(size=[int(bitmap.shape[0]), int(bitmap.shape[1])], counts=counts)


def _poses(
    head: Head, rows: Any, input_shape: tuple[int, int], original: tuple[int, int]
) -> list[Detection]:
    from ultralytics.utils import ops

    shape = head.keypoint_shape or (0, 2)
    points = rows[:, 6:].view(rows.shape[0], *shape)
    points = ops.scale_coords(input_shape, points, original)
    rows[:, :4] = ops.scale_boxes(input_shape, rows[:, :4], original)
    names = head.keypoint_names or []
    detections = []
    for row, keypoints in zip(
        rows[:, :6].float().cpu().numpy().tolist(),
        points.float().cpu().numpy().tolist(),
        strict=True,
    ):
        detections.append(
            _detection(
                head,
                row,
                PoseDetection,
                keypoints=[
                    Keypoint(
                        name=names[k] if k < len(names) else None,
                        x=round(point[0], 2),
                        y=round(point[1], 2),
                        confidence=round(point[2], 6) if len(point) > 2 else None,
                    )
                    for k, point in enumerate(keypoints)
                ],
            )
        )
    return detections


def _oriented(
    head: Head, rows: Any, input_shape: tuple[int, int], original: tuple[int, int]
) -> list[Detection]:
    import torch
    from ultralytics.utils import ops

    # Ultralytics' OBBPredictor: rows are cx, cy, w, h, confidence, class, angle.
    rboxes: Any = torch.cat([rows[:, :4], rows[:, -1:]], dim=-1)
    rboxes[:, :4] = ops.scale_boxes(input_shape, rboxes[:, :4], original, xywh=True)
    corners = ops.xywhr2xyxyxyxy(rboxes)  # type: ignore[no-untyped-call]
    detections = []
    for rbox, row, quad in zip(
        rboxes.float().cpu().numpy().tolist(),
        rows[:, 4:6].float().cpu().numpy().tolist(),
        corners.float().cpu().numpy().tolist(),
        strict=True,
    ):
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        detections.append(
            _detection(
                head,
                [min(xs), min(ys), max(xs), max(ys), row[0], row[1]],
                ObbDetection,
                rotated_box=RotatedBox(
                    cx=round(rbox[0], 2),
                    cy=round(rbox[1], 2),
                    width=round(rbox[2], 2),
                    height=round(rbox[3], 2),
                    angle=round(rbox[4], 6),
                    corners=[[round(x, 2), round(y, 2)] for x, y in quad],
                ),
            )
        )
    return detections


def _classify(head: Head, raw: Any, params: InferenceParams) -> list[Prediction]:
    import torch

    # The classify head already returns probabilities (softmax) at inference.
    probs = (raw[0] if isinstance(raw, list | tuple) else raw).float()
    k = min(params.top_k, probs.shape[1])
    values, indexes = torch.topk(probs, k, dim=1)
    return [
        Prediction(
            detections=[],
            classes=[
                ClassScore(
                    class_id=int(i),
                    class_name=head.names.get(int(i), str(int(i))),
                    confidence=round(float(v), 6),
                )
                for v, i in zip(row_values, row_indexes, strict=True)
            ],
        )
        for row_values, row_indexes in zip(values.tolist(), indexes.tolist(), strict=True)
    ]
