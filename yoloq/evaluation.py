"""Scoring detections against ground truth: precision and recall at an IoU threshold.

Used by the demo (its sample images come with labels) and by the tests that hold the
service to known ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yoloq.results import Detection

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Truth:
    class_id: int
    box: Box


@dataclass
class Score:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, other: Score) -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        present = self.true_positives + self.false_negatives
        return self.true_positives / present if present else 1.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def score(detections: Sequence[Detection], truths: Sequence[Truth], min_iou: float = 0.5) -> Score:
    """Greedy matching, most confident first: a detection is a true positive when it overlaps
    an unmatched object of its class at ``min_iou`` or more."""
    unmatched = list(truths)
    result = Score()
    for detection in sorted(detections, key=lambda d: -d.confidence):
        candidates = [
            (iou(detection.box, truth.box), n)
            for n, truth in enumerate(unmatched)
            if truth.class_id == detection.class_id
        ]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= min_iou:
            unmatched.pop(best[1])
            result.true_positives += 1
        else:
            result.false_positives += 1
    result.false_negatives = len(unmatched)
    return result


def read_yolo_labels(path: Path, width: int, height: int) -> list[Truth]:
    """A YOLO label file (class, centre x, centre y, width, height; normalised) in pixels."""
    truths = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        class_id, cx, cy, w, h = line.split()
        x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        truths.append(Truth(int(class_id), (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)))
    return truths
