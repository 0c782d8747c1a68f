from pathlib import Path

import pytest

from yoloq.evaluation import Truth, iou, read_yolo_labels, score
from yoloq.results import Detection


def _det(class_id: int, box: list[float], confidence: float = 0.9) -> Detection:
    return Detection(class_id=class_id, class_name=str(class_id), confidence=confidence, box=box)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_score_matches_class_and_overlap_once() -> None:
    truths = [Truth(0, (0, 0, 10, 10)), Truth(1, (20, 20, 40, 40))]
    detections = [
        _det(0, [0, 0, 10, 9]),  # match
        _det(0, [0, 0, 10, 10], 0.5),  # duplicate of a matched object
        _det(0, [20, 20, 40, 40]),  # right place, wrong class
    ]
    result = score(detections, truths)
    assert (result.true_positives, result.false_positives, result.false_negatives) == (1, 2, 1)
    assert result.precision == pytest.approx(1 / 3)
    assert result.recall == pytest.approx(1 / 2)


def test_read_yolo_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("2 0.5 0.25 0.2 0.1\n\n")
    [truth] = read_yolo_labels(path, width=200, height=400)
    assert truth.class_id == 2
    assert truth.box == pytest.approx((80, 80, 120, 120))
