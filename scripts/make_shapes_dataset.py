"""Generate a synthetic "shapes" detection dataset (circle, square, triangle, star) in YOLO format.

The project needs a detector whose behaviour it can check without downloading anything, so the
images are drawn here from a seed: the same seed always gives the same pixels and the same labels.
Tests can also call :func:`generate_image` directly to get an image with exact ground truth
without touching the file system.

Commands that produced the committed fixtures (run from the repository root)::

    # training data for scripts/train_fixture_model.py (train seed 0, held-out val seed 1)
    python scripts/make_shapes_dataset.py --out /tmp/yoloq_shapes --seed 0 --count 600 \
        --val-seed 1 --val-count 120

    # the held-out sample images committed under tests/fixtures/samples/ (seed 7)
    python scripts/make_shapes_dataset.py --samples --out tests/fixtures/samples --seed 7 \
        --count 8 --jpeg-quality 85

Layouts written:

* dataset (default): ``OUT/images/{train,val}/*.jpg``, ``OUT/labels/{train,val}/*.txt`` and
  ``OUT/shapes.yaml`` for Ultralytics.
* ``--samples``: ``OUT/*.jpg`` and ``OUT/labels/*.txt`` (a flat, commit-friendly set).

Label lines are YOLO format: ``class x_center y_center width height``, normalised to 0..1.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star")
"""Class names; the index is the class id used in labels and by the trained model."""

MIN_SIDE = 240
MAX_SIDE = 1280
MIN_OBJECT_PX = 20
"""Absolute lower bound on an object's extent, so every shape stays recognisable."""

MIN_OBJECT_FRACTION = 0.075
"""Lower bound relative to the long side: keeps objects >= ~24 px after a 320 px letterbox."""

MAX_OBJECT_FRACTION = 0.36
"""Upper bound relative to the short side, so several objects fit in one image."""

# Distinct, saturated BGR colours; each shape picks one that contrasts with what lies beneath it.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (40, 40, 220),  # red
    (50, 170, 50),  # green
    (200, 90, 30),  # blue
    (40, 215, 240),  # yellow
    (215, 200, 40),  # cyan
    (200, 50, 200),  # magenta
    (30, 140, 250),  # orange
    (245, 245, 245),  # white
    (25, 25, 25),  # black
    (130, 40, 100),  # purple
)

ASPECT_RATIOS: tuple[float, ...] = (
    1.0,
    1.0,
    4 / 3,
    3 / 4,
    3 / 2,
    2 / 3,
    16 / 9,
    9 / 16,
    2.0,
    1 / 2,
)

Box = tuple[int, float, float, float, float]
"""(class_id, x1, y1, x2, y2) in pixels of the image, clipped to the image."""


@dataclass(frozen=True)
class Shape:
    """One object to draw: its class, centre, extent (diameter-like size) and rotation."""

    class_id: int
    cx: float
    cy: float
    size: float
    angle: float
    star_inner: float = 0.45

    def outline(self) -> np.ndarray | None:
        """Polygon vertices (N, 2) for polygonal shapes, None for the circle."""
        r = self.size / 2
        if self.class_id == 0:
            return None
        if self.class_id == 1:
            # A square whose side is 0.8 * size; rotation is kept mild by the caller.
            half = 0.4 * self.size
            pts = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        elif self.class_id == 2:
            angles = np.deg2rad(np.array([-90.0, 30.0, 150.0]))
            pts = np.stack([np.cos(angles), np.sin(angles)], axis=1) * r
        else:
            angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
            radii = np.where(np.arange(10) % 2 == 0, r, r * self.star_inner)
            pts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
        a = math.radians(self.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        outline: np.ndarray = pts @ rot.T + np.array([self.cx, self.cy])
        return outline

    def extent(self) -> tuple[float, float, float, float]:
        """Unclipped axis-aligned box (x1, y1, x2, y2) of the drawn shape."""
        pts = self.outline()
        if pts is None:
            r = self.size / 2
            return self.cx - r, self.cy - r, self.cx + r, self.cy + r
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )


def as_rng(rng_or_seed: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator or a seed so tests can pass either."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, image index): image i does not depend on --count."""
    return np.random.default_rng([seed, index])


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Pick (width, height) within 240..1280 px, mostly non-square."""
    for _ in range(100):
        long_side = int(rng.integers(MIN_SIDE + 40, MAX_SIDE + 1))
        ratio = float(rng.choice(ASPECT_RATIOS))
        if ratio >= 1:
            w, h = long_side, round(long_side / ratio)
        else:
            w, h = round(long_side * ratio), long_side
        if min(w, h) >= MIN_SIDE and max(w, h) <= MAX_SIDE:
            return int(w), int(h)
    return MIN_SIDE, MIN_SIDE


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _gradient_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Linear gradient between two random colours at a random angle."""
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c1, c2 = _random_colour(rng), _random_colour(rng)
    image: np.ndarray = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return image


def _blob_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour blobs: a tiny random grid upscaled with bicubic interpolation."""
    gw, gh = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    grid = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _stripe_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Low-contrast sinusoidal stripes or a checker-like pattern (a texture, not a shape)."""
    base = _random_colour(rng)
    amp = rng.uniform(15, 45)
    period = rng.uniform(8, 40)
    a = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wave = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
    if rng.random() < 0.5:
        wave = wave * np.sin((-xx * math.sin(a) + yy * math.cos(a)) * 2 * math.pi / period)
    image: np.ndarray = base[None, None, :] + amp * wave[..., None]
    return image


def _noise_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Flat colour with strong, slightly blurred per-pixel noise (grainy texture)."""
    base = _random_colour(rng)
    grain = rng.normal(0, rng.uniform(15, 35), size=(h, w, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(grain, (0, 0), rng.uniform(0.5, 2.0))
    return base[None, None, :] + noise


def _add_clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Thin random lines: background clutter the detector must learn to ignore."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(float(c) for c in _random_colour(rng))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)


def make_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Textured / noisy / gradient background as float32 BGR (values may exceed 0..255)."""
    makers = (_gradient_background, _blob_background, _stripe_background, _noise_background)
    img = makers[int(rng.integers(0, len(makers)))](rng, w, h).astype(np.float32)
    if rng.random() < 0.35:
        # Mix in a second texture so backgrounds are not all of one kind.
        other = makers[int(rng.integers(0, len(makers)))](rng, w, h).astype(np.float32)
        img = 0.6 * img + 0.4 * other
    img = np.clip(img, 0, 255)
    if rng.random() < 0.5:
        _add_clutter(rng, img)
    return img


def _overlap_ok(box: tuple[float, float, float, float], placed: list[Shape]) -> bool:
    """Allow touching and partial overlap, but never hide more than ~30% of a box."""
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    for other in placed:
        ox1, oy1, ox2, oy2 = other.extent()
        iw = min(x2, ox2) - max(x1, ox1)
        ih = min(y2, oy2) - max(y1, oy1)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        if inter > 0.3 * area or inter > 0.3 * (ox2 - ox1) * (oy2 - oy1):
            return False
    return True


def _clipped(
    box: tuple[float, float, float, float], w: int, h: int
) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)


def _visible_enough(box: tuple[float, float, float, float], w: int, h: int) -> bool:
    """Require a border-cut shape to keep >= 65% of its box and >= 20 px each way."""
    x1, y1, x2, y2 = box
    cx1, cy1, cx2, cy2 = _clipped(box, w, h)
    if cx2 - cx1 < MIN_OBJECT_PX or cy2 - cy1 < MIN_OBJECT_PX:
        return False
    return (cx2 - cx1) * (cy2 - cy1) >= 0.65 * (x2 - x1) * (y2 - y1)


def _propose_shape(rng: np.random.Generator, w: int, h: int, placed: list[Shape]) -> Shape:
    """Random shape; sometimes next to an existing one (touching) or straddling the border."""
    min_size = max(MIN_OBJECT_PX, MIN_OBJECT_FRACTION * max(w, h))
    max_size = max(min_size * 1.3, MAX_OBJECT_FRACTION * min(w, h))
    size = float(math.exp(rng.uniform(math.log(min_size), math.log(max_size))))
    class_id = int(rng.integers(0, len(CLASS_NAMES)))
    angle = float(rng.uniform(-25, 25)) if class_id == 1 else float(rng.uniform(0, 360))
    mode = rng.random()
    if placed and mode < 0.25:
        anchor = placed[int(rng.integers(0, len(placed)))]
        theta = rng.uniform(0, 2 * math.pi)
        dist = (anchor.size + size) / 2 * rng.uniform(0.85, 1.05)
        cx, cy = anchor.cx + dist * math.cos(theta), anchor.cy + dist * math.sin(theta)
    elif mode < 0.45:
        # Near a border: the centre lies within about a third of the size from an edge.
        off = rng.uniform(-0.2, 0.5) * size
        side = int(rng.integers(0, 4))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        cx = off if side == 0 else w - off if side == 1 else cx
        cy = off if side == 2 else h - off if side == 3 else cy
    else:
        cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
    return Shape(class_id, float(cx), float(cy), size, angle, float(rng.uniform(0.42, 0.52)))


def place_shapes(rng: np.random.Generator, w: int, h: int) -> list[Shape]:
    """Place 1..8 shapes (more in bigger images) under the overlap and visibility rules."""
    target = int(rng.integers(1, 5 + min(4, (w * h) // 250_000) + 1))
    placed: list[Shape] = []
    attempts = 0
    while len(placed) < target and attempts < 60 * target:
        attempts += 1
        shape = _propose_shape(rng, w, h, placed)
        box = shape.extent()
        if _visible_enough(box, w, h) and _overlap_ok(box, placed):
            placed.append(shape)
    return placed


def _shape_mask(shape: Shape, w: int, h: int, ss: int = 4) -> np.ndarray:
    """Anti-aliased coverage mask (float32 0..1) drawn with sub-pixel precision."""
    mask = np.zeros((h, w), dtype=np.uint8)
    pts = shape.outline()
    if pts is None:
        centre = (round(shape.cx * ss), round(shape.cy * ss))
        cv2.circle(mask, centre, round(shape.size / 2 * ss), 255, -1, cv2.LINE_AA, 2)
    else:
        poly = np.round(pts * ss).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, 2)
    return mask.astype(np.float32) / 255.0


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """Choose a palette colour far from the mean colour beneath the shape, plus jitter."""
    mean = under.reshape(-1, 3).mean(axis=0)
    order = rng.permutation(len(PALETTE))
    best = np.array(PALETTE[order[0]], dtype=np.float32)
    best_dist = -1.0
    for i in order:
        colour = np.array(PALETTE[i], dtype=np.float32)
        dist = float(np.linalg.norm(colour - mean))
        if dist >= 120:
            best = colour
            break
        if dist > best_dist:
            best, best_dist = colour, dist
    return np.clip(best + rng.uniform(-15, 15, size=3), 0, 255)


def draw_shape(rng: np.random.Generator, img: np.ndarray, shape: Shape) -> None:
    """Composite one filled shape (optionally shaded and outlined) onto a float image."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in _clipped(shape.extent(), w, h))
    x1, y1 = max(0, x1 - 2), max(0, y1 - 2)
    x2, y2 = min(w, x2 + 3), min(h, y2 + 3)
    mask = _shape_mask(shape, w, h)[y1:y2, x1:x2, None]
    region = img[y1:y2, x1:x2]
    colour = _pick_colour(rng, region)
    fill = np.broadcast_to(colour, region.shape).astype(np.float32)
    if rng.random() < 0.5:
        # Gentle shading so shapes are not perfectly flat.
        yy, xx = np.mgrid[0 : y2 - y1, 0 : x2 - x1].astype(np.float32)
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0) - 0.5
        fill = fill * (1 + rng.uniform(0.1, 0.3) * t[..., None])
    if rng.random() < 0.3:
        ring = cv2.erode(
            mask[..., 0], np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3))
        )
        edge = np.clip(mask[..., 0] - ring, 0, 1)[..., None]
        fill = fill * (1 - edge) + fill * 0.5 * edge
    img[y1:y2, x1:x2] = region * (1 - mask) + np.clip(fill, 0, 255) * mask


def finish_image(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Camera-like degradations (noise, blur, brightness) and conversion to uint8 BGR."""
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-20, 20)
    img = img + rng.normal(0, rng.uniform(2, 10), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def generate_image(
    rng_or_seed: np.random.Generator | int | None,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[Box]]:
    """Draw one image and return ``(bgr uint8 array, [(class_id, x1, y1, x2, y2), ...])``.

    ``size`` is ``(width, height)``; by default a random size within 240..1280 px is used.
    Boxes are in pixels and clipped to the image; objects drawn later may cover at most ~30% of
    an earlier object's box, so every labelled object stays recognisable.
    """
    img, shapes = generate_shapes_image(rng_or_seed, size)
    h, w = img.shape[:2]
    boxes: list[Box] = []
    for shape in shapes:
        x1, y1, x2, y2 = _clipped(shape.extent(), w, h)
        boxes.append((shape.class_id, x1, y1, x2, y2))
    return img, boxes


def generate_shapes_image(
    rng_or_seed: np.random.Generator | int | None,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[Shape]]:
    """Like :func:`generate_image` (same pixels for the same seed) but return the drawn
    :class:`Shape` objects, in drawing order, instead of their boxes: the exact geometry that
    the segment / pose / OBB labels are derived from (``scripts/make_task_datasets.py``)."""
    rng = as_rng(rng_or_seed)
    w, h = size if size is not None else random_size(rng)
    img = make_background(rng, w, h)
    shapes = place_shapes(rng, w, h)
    for shape in shapes:
        draw_shape(rng, img, shape)
    return finish_image(rng, img), shapes


def to_yolo_lines(boxes: list[Box], w: int, h: int) -> list[str]:
    """Pixel boxes -> YOLO label lines (normalised centre x/y, width, height)."""
    lines = []
    for cls, x1, y1, x2, y2 in boxes:
        xc, yc = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
        bw, bh = (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{cls} {xc:.6f} {yc:.6f} {bw:.6f} {bh:.6f}")
    return lines


def write_split(
    images_dir: Path, labels_dir: Path, seed: int, count: int, quality: int, prefix: str
) -> None:
    """Write ``count`` images and their label files for one seed."""
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, boxes = generate_image(image_rng(seed, i))
        stem = f"{prefix}_s{seed}_{i:05d}"
        cv2.imwrite(str(images_dir / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        h, w = img.shape[:2]
        (labels_dir / f"{stem}.txt").write_text("\n".join(to_yolo_lines(boxes, w, h)) + "\n")


def write_dataset_yaml(out: Path) -> Path:
    """Ultralytics dataset description pointing at the train/val splits under ``out``."""
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES))
    path = out / "shapes.yaml"
    path.write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
    )
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train split (or samples)")
    parser.add_argument("--count", type=int, default=600, help="train images (or sample images)")
    parser.add_argument("--val-seed", type=int, default=1, help="seed of the held-out val split")
    parser.add_argument("--val-count", type=int, default=120, help="held-out val images")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1..100")
    parser.add_argument(
        "--samples",
        action="store_true",
        help="write a flat sample set: OUT/*.jpg and OUT/labels/*.txt (no val split, no YAML)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out: Path = args.out
    if args.samples:
        write_split(out, out / "labels", args.seed, args.count, args.jpeg_quality, "sample")
        print(f"wrote {args.count} samples to {out}")
        return
    q = args.jpeg_quality
    write_split(out / "images/train", out / "labels/train", args.seed, args.count, q, "train")
    write_split(out / "images/val", out / "labels/val", args.val_seed, args.val_count, q, "val")
    print(f"wrote {write_dataset_yaml(out)}")


if __name__ == "__main__":
    main()
