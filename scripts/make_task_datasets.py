"""Segment / pose / OBB / classify datasets from the "shapes" generator, in Ultralytics formats.

The images are exactly those of ``scripts/make_shapes_dataset.py`` (same seed, same pixels); only
the labels differ, derived from the drawn shapes' exact geometry. Tests can call the
``*_ground_truth`` functions on the shapes of one generated image
(:func:`scripts.make_shapes_dataset.generate_shapes_image`) to get the ground truth in pixels::

    img, shapes = generate_shapes_image(image_rng(7, 0))
    h, w = img.shape[:2]
    segment_ground_truth(shapes, w, h)   # [PolygonTarget(class_id, polygon (N, 2)), ...]
    pose_ground_truth(shapes, w, h)      # [PoseTarget(box xyxy, keypoints (4, 3)), ...]
    obb_ground_truth(shapes, w, h)       # [ObbTarget(class_id, corners (4, 2)), ...]
    classify_crop_boxes(shapes, w, h)    # [CropTarget(class_id, square box xyxy), ...]

Ground truth, per task (pixels of the image, y down):

* segment: every shape's outline (the circle as a 32-gon on its circumference), clipped to the
  image (Sutherland-Hodgman). The whole shape, not just its visible part: a later shape may cover
  a little of an earlier one (the generator allows ~30% of a box), that part stays in the earlier
  shape's polygon. Classes as for detect.
* pose: one class, ``square``; its 4 corners ordered top-left, top-right, bottom-right,
  bottom-left in the square's own frame (squares rotate only +-25 degrees); visibility 2 inside
  the image, 0 outside (written as ``0 0 0`` in the label file, the COCO convention). The box is
  the clipped box the detector uses. Other shapes are unlabelled (negatives).
* obb: all four classes. The square's exact rotated rectangle, ``cv2.minAreaRect`` of the outline
  for the triangle and the star, the axis-aligned box for the circle. A shape cut by the image
  border gets the rectangle with that same orientation that bounds its visible part (the circle:
  its clipped box), as Ultralytics' own augmentations do for OBBs that leave a crop.
* classify: square crops centred on single shapes with a ~15% margin and some jitter of centre and
  scale (parts outside the image padded grey), resized to 96 px; ImageFolder layout
  ``OUT/{train,val}/<class name>/*.jpg``. ImageFolder sorts the folders, so the classifier's class
  ids follow :data:`CLASSIFY_NAMES` (alphabetical), not the detector's: compare by name.

Layouts written (``--task``)::

    python scripts/make_task_datasets.py --task segment --out /tmp/shapes-seg --count 600
    # OUT/images/{train,val}/*.jpg, OUT/labels/{train,val}/*.txt, OUT/shapes-<task>.yaml
    python scripts/make_task_datasets.py --task classify --out /tmp/shapes-cls
    # OUT/{train,val}/{circle,square,triangle,star}/*.jpg (Ultralytics data=OUT)

``--draw N`` also writes the first N train images with their labels drawn on them
(``OUT/drawn/*.png``) for a visual check.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.make_shapes_dataset import (  # noqa: E402
    CLASS_NAMES,
    Shape,
    generate_shapes_image,
    image_rng,
)

TASKS: tuple[str, ...] = ("segment", "pose", "obb", "classify")
CIRCLE_POINTS = 32
"""Vertices of the polygon standing for a circle in segment labels."""

SQUARE_CLASS_ID = CLASS_NAMES.index("square")
POSE_CLASS_NAMES: tuple[str, ...] = ("square",)
KPT_NAMES: tuple[str, ...] = ("top_left", "top_right", "bottom_right", "bottom_left")
KPT_SHAPE: tuple[int, int] = (4, 3)
FLIP_IDX: tuple[int, ...] = (1, 0, 3, 2)
"""Keypoint order after a horizontal flip: the left and right corners swap."""

CLASSIFY_NAMES: tuple[str, ...] = tuple(sorted(CLASS_NAMES))
"""The classifier's class names by id: ImageFolder orders the class folders alphabetically."""

CROP_MARGIN = 0.15
"""Margin around a shape's box in classification crops, as a fraction of its longer side."""
CROP_JITTER = 0.08
"""Random shift of a crop's centre (fraction of its side) and of its scale (+-)."""
CROP_SIZE = 96
"""Side of the saved classification crops, px (trained and served at imgsz 64)."""
PAD_VALUE = 114

XYXY = tuple[float, float, float, float]


class PolygonTarget(NamedTuple):
    """Segment ground truth: class id and polygon vertices (N, 2) in pixels, inside the image."""

    class_id: int
    polygon: np.ndarray


class PoseTarget(NamedTuple):
    """Pose ground truth of one square: its clipped box (x1, y1, x2, y2) and keypoints (4, 3)
    as (x, y, visibility), visibility 2 inside the image and 0 outside (x, y kept even then)."""

    box: XYXY
    keypoints: np.ndarray


class ObbTarget(NamedTuple):
    """OBB ground truth: class id and the rectangle's 4 corners (4, 2) in pixels (consecutive
    corners are adjacent; the start corner carries no meaning)."""

    class_id: int
    corners: np.ndarray


class CropTarget(NamedTuple):
    """Classification crop: the detector's class id (``CLASS_NAMES``; the classifier numbers
    classes as ``CLASSIFY_NAMES``) and a square region (x1, y1, x2, y2) in integer pixels; it may
    reach outside the image (:func:`crop_image` pads that part grey)."""

    class_id: int
    box: tuple[int, int, int, int]


# --- geometry --------------------------------------------------------------------------------


def shape_polygon(shape: Shape, circle_points: int = CIRCLE_POINTS) -> np.ndarray:
    """The shape's full outline (N, 2) in pixels; a circle becomes a regular polygon."""
    pts = shape.outline()
    if pts is not None:
        return pts.astype(np.float64)
    t = np.linspace(0.0, 2 * math.pi, circle_points, endpoint=False)
    r = shape.size / 2
    return np.stack([shape.cx + r * np.cos(t), shape.cy + r * np.sin(t)], axis=1)


def clip_polygon(polygon: np.ndarray, w: int, h: int) -> np.ndarray:
    """Clip a polygon (convex or not) to the image rectangle [0, w] x [0, h] (Sutherland-Hodgman).

    Returns (M, 2); M < 3 when nothing of the polygon lies inside.
    """
    pts = [(float(x), float(y)) for x, y in polygon]
    # One pass per image edge: (axis, limit, sign); a point is inside when sign * (p - limit) >= 0.
    for axis, limit, sign in ((0, 0.0, 1), (0, float(w), -1), (1, 0.0, 1), (1, float(h), -1)):
        out: list[tuple[float, float]] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = sign * (cur[axis] - limit) >= 0
            if cur_in != (sign * (prev[axis] - limit) >= 0):
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                out.append(cur)
        pts = out
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def clipped_box(shape: Shape, w: int, h: int) -> XYXY:
    """The shape's box clipped to the image: the detector's ground truth."""
    x1, y1, x2, y2 = shape.extent()
    return max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)


def _box_corners(box: XYXY) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def _full_rect(shape: Shape) -> np.ndarray:
    """The OBB of the whole (unclipped) shape, (4, 2)."""
    pts = shape.outline()
    if pts is None:
        return _box_corners(shape.extent())
    if shape.class_id == SQUARE_CLASS_ID:
        return pts.astype(np.float64)  # exact: the square's own corners
    rect = cv2.minAreaRect(pts.astype(np.float32))
    return np.asarray(cv2.boxPoints(rect), dtype=np.float64)


def _aligned_bounds(points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The rectangle with one side along ``direction`` that bounds ``points``, (4, 2)."""
    u = direction / np.linalg.norm(direction)
    basis = np.array([u, [-u[1], u[0]]])  # rows: the rectangle's axes
    proj = points @ basis.T
    (a1, b1), (a2, b2) = proj.min(0), proj.max(0)
    corners: np.ndarray = np.array([[a1, b1], [a2, b1], [a2, b2], [a1, b2]]) @ basis
    return corners


# --- ground truth per task (pixels) ------------------------------------------------------------


def segment_ground_truth(shapes: Sequence[Shape], w: int, h: int) -> list[PolygonTarget]:
    """Each shape's polygon clipped to the image, in drawing order."""
    targets = []
    for shape in shapes:
        poly = clip_polygon(shape_polygon(shape), w, h)
        if len(poly) >= 3:
            targets.append(PolygonTarget(shape.class_id, poly))
    return targets


def square_keypoints(shape: Shape, w: int, h: int) -> np.ndarray:
    """(4, 3) corners of a square as (x, y, visibility): TL, TR, BR, BL in its own frame."""
    pts = shape.outline()
    assert pts is not None and shape.class_id == SQUARE_CLASS_ID, "keypoints are for squares"
    # Shape.outline() lists the unrotated square's corners as (-,-), (+,-), (+,+), (-,+): with
    # y pointing down that is top-left, top-right, bottom-right, bottom-left.
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)
    return np.concatenate([pts, np.where(inside, 2.0, 0.0)[:, None]], axis=1)


def pose_ground_truth(shapes: Sequence[Shape], w: int, h: int) -> list[PoseTarget]:
    """One target per square (other shapes are not labelled), in drawing order."""
    return [
        PoseTarget(clipped_box(s, w, h), square_keypoints(s, w, h))
        for s in shapes
        if s.class_id == SQUARE_CLASS_ID
    ]


def obb_ground_truth(shapes: Sequence[Shape], w: int, h: int) -> list[ObbTarget]:
    """Rotated rectangle of each shape (see the module docstring), in drawing order."""
    targets = []
    for shape in shapes:
        if shape.outline() is None:
            targets.append(ObbTarget(shape.class_id, _box_corners(clipped_box(shape, w, h))))
            continue
        rect = _full_rect(shape)
        visible = clip_polygon(shape_polygon(shape), w, h)
        if len(visible) < 3:
            continue
        targets.append(ObbTarget(shape.class_id, _aligned_bounds(visible, rect[1] - rect[0])))
    return targets


def classify_crop_boxes(
    shapes: Sequence[Shape],
    w: int,
    h: int,
    rng: np.random.Generator | None = None,
    margin: float = CROP_MARGIN,
    jitter: float = CROP_JITTER,
) -> list[CropTarget]:
    """One square crop region per shape: its clipped box's longer side plus ``margin`` on each
    side, centre and scale jittered by up to ``jitter`` when ``rng`` is given."""
    targets = []
    for shape in shapes:
        x1, y1, x2, y2 = clipped_box(shape, w, h)
        side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if rng is not None:
            side *= 1 + float(rng.uniform(-jitter, jitter))
            cx += float(rng.uniform(-jitter, jitter)) * side
            cy += float(rng.uniform(-jitter, jitter)) * side
        half = side / 2
        box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        targets.append(CropTarget(shape.class_id, box))
    return targets


def crop_image(
    img: np.ndarray, box: tuple[int, int, int, int], size: int | None = CROP_SIZE
) -> np.ndarray:
    """Cut ``box`` out of ``img`` (grey where it leaves the image), resized to ``size`` px."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    crop = img[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    crop = cv2.copyMakeBorder(
        crop,
        max(0, -y1),
        max(0, y2 - h),
        max(0, -x1),
        max(0, x2 - w),
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    if size is not None:
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    result: np.ndarray = crop
    return result


# --- label files -------------------------------------------------------------------------------


def _norm(points: np.ndarray, w: int, h: int) -> str:
    return " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in points)


def label_lines(task: str, shapes: Sequence[Shape], w: int, h: int) -> list[str]:
    """Ultralytics label lines of one image for ``segment``, ``pose`` or ``obb``."""
    if task == "segment":
        return [
            f"{t.class_id} {_norm(t.polygon, w, h)}" for t in segment_ground_truth(shapes, w, h)
        ]
    if task == "obb":
        return [f"{t.class_id} {_norm(t.corners, w, h)}" for t in obb_ground_truth(shapes, w, h)]
    if task == "pose":
        lines = []
        for t in pose_ground_truth(shapes, w, h):
            x1, y1, x2, y2 = t.box
            xywh = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
            box = " ".join(f"{v:.6f}" for v in xywh)
            kpts = " ".join(
                f"{x / w:.6f} {y / h:.6f} {int(v)}" if v > 0 else "0 0 0" for x, y, v in t.keypoints
            )
            lines.append(f"0 {box} {kpts}")
        return lines
    raise ValueError(f"no label lines for task {task!r}")


def write_task_split(
    task: str, out: Path, split: str, seed: int, count: int, quality: int = 90
) -> int:
    """Write ``count`` generated images of one seed with ``task`` labels; returns the number of
    images written (classify: crops)."""
    written = 0
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if task == "classify":
        for name in CLASS_NAMES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    else:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = image_rng(seed, i)
        img, shapes = generate_shapes_image(rng)
        h, w = img.shape[:2]
        stem = f"{split}_s{seed}_{i:05d}"
        if task == "classify":
            # The jitter continues the image's own stream: image i's crops do not depend on count.
            for k, target in enumerate(classify_crop_boxes(shapes, w, h, rng)):
                path = out / split / CLASS_NAMES[target.class_id] / f"{stem}_{k}.jpg"
                cv2.imwrite(str(path), crop_image(img, target.box), params)
                written += 1
            continue
        cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), img, params)
        lines = label_lines(task, shapes, w, h)
        (out / "labels" / split / f"{stem}.txt").write_text("".join(f"{x}\n" for x in lines))
        written += 1
    return written


def write_task_yaml(task: str, out: Path) -> Path:
    """Ultralytics dataset YAML for ``segment``, ``pose`` or ``obb`` (classify uses the folder)."""
    names = POSE_CLASS_NAMES if task == "pose" else CLASS_NAMES
    text = f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n"
    text += "".join(f"  {i}: {name}\n" for i, name in enumerate(names))
    if task == "pose":
        text += f"kpt_shape: [{KPT_SHAPE[0]}, {KPT_SHAPE[1]}]\n"
        text += f"flip_idx: [{', '.join(map(str, FLIP_IDX))}]\n"
        text += "kpt_names:\n  0:\n" + "".join(f"    - {n}\n" for n in KPT_NAMES)
    path = out / f"shapes-{task}.yaml"
    path.write_text(text)
    return path


def build_task_dataset(
    task: str,
    out: Path,
    train: tuple[int, int] = (0, 600),
    val: tuple[int, int] = (1, 120),
    quality: int = 90,
) -> tuple[Path, dict[str, int]]:
    """Write both splits, ``train`` and ``val`` given as (seed, image count). Returns what
    Ultralytics' ``data=`` takes (the YAML, or the folder for classify) and the number of
    samples per split (classify: crops)."""
    counts = {
        "train": write_task_split(task, out, "train", train[0], train[1], quality),
        "val": write_task_split(task, out, "val", val[0], val[1], quality),
    }
    return (out if task == "classify" else write_task_yaml(task, out)), counts


# --- visual check ------------------------------------------------------------------------------

_COLOURS = ((0, 0, 255), (0, 200, 0), (255, 80, 0), (0, 220, 255))


def draw_ground_truth(task: str, img: np.ndarray, shapes: Sequence[Shape]) -> np.ndarray:
    """A copy of ``img`` with ``task``'s ground truth drawn on it (keypoints numbered 0..3)."""
    canvas = img.copy()
    h, w = img.shape[:2]

    def poly(points: np.ndarray, colour: tuple[int, int, int]) -> None:
        pts = np.round(points).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], True, colour, 2, cv2.LINE_AA)

    if task == "segment":
        for s in segment_ground_truth(shapes, w, h):
            poly(s.polygon, _COLOURS[s.class_id])
    elif task == "obb":
        for o in obb_ground_truth(shapes, w, h):
            poly(o.corners, _COLOURS[o.class_id])
    elif task == "pose":
        for p in pose_ground_truth(shapes, w, h):
            x1, y1, x2, y2 = (round(v) for v in p.box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), 1)
            for k, (x, y, v) in enumerate(p.keypoints):
                colour = (0, 0, 255) if v > 0 else (128, 128, 128)
                cv2.circle(canvas, (round(x), round(y)), 4, colour, -1)
                cv2.putText(canvas, str(k), (round(x) + 5, round(y) - 5), 0, 0.6, colour, 2)
    else:
        for c in classify_crop_boxes(shapes, w, h):
            x1, y1, x2, y2 = c.box
            cv2.rectangle(canvas, (x1, y1), (x2, y2), _COLOURS[c.class_id], 2)
    return canvas


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train split")
    parser.add_argument("--count", type=int, default=600, help="train images")
    parser.add_argument("--val-seed", type=int, default=1, help="seed of the held-out val split")
    parser.add_argument("--val-count", type=int, default=120, help="held-out val images")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1..100")
    parser.add_argument("--draw", type=int, default=0, metavar="N", help="draw N train images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out: Path = args.out
    data, counts = build_task_dataset(
        args.task, out, (args.seed, args.count), (args.val_seed, args.val_count), args.jpeg_quality
    )
    if args.draw:
        (out / "drawn").mkdir(parents=True, exist_ok=True)
        for i in range(args.draw):
            img, shapes = generate_shapes_image(image_rng(args.seed, i))
            drawn = draw_ground_truth(args.task, img, shapes)
            cv2.imwrite(str(out / "drawn" / f"{args.task}_{i:05d}.png"), drawn)
    print(f"wrote {data} ({counts['train']} train, {counts['val']} val)")


if __name__ == "__main__":
    main()
