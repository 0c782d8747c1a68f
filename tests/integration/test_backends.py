"""Backends: ONNX Runtime, exported with ``yoloq export``, agrees with the .pt it came from.

Tolerance: boxes within 1 px and confidences within 0.005 — the float32 arithmetic of two
runtimes, not a change in what is found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from workers.device import parse_device
from workers.export import export_weights
from workers.images import decode_image
from workers.model import Detector
from yoloq.schemas import Detection, InferenceParams

BOX_TOLERANCE_PX = 1.0
CONFIDENCE_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def onnx_path(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / f"{model_path.stem}.onnx"
    return export_weights(model_path, "onnx", out, None, tmp_path_factory.mktemp("cache"))


def _sorted(found: list[Detection]) -> list[Detection]:
    return sorted(found, key=lambda d: (d.class_id, d.box[0], d.box[1]))


def test_onnx_matches_pt_on_the_sample_images(model_path: Path, onnx_path: Path) -> None:
    assert onnx_path.is_file() and onnx_path.suffix == ".onnx"
    cpu = parse_device("cpu")
    pt, onnx = Detector(model_path, cpu), Detector(onnx_path, cpu)
    assert onnx.names == pt.names
    assert onnx.default_imgsz == pt.default_imgsz  # the export carries the training size
    params = InferenceParams()
    compared = 0
    for path in sorted((FIXTURES / "samples").glob("*.jpg")):
        image = decode_image(path.read_bytes())
        [from_pt] = pt.predict_batch([image], params)
        [from_onnx] = onnx.predict_batch([image], params)
        assert [d.class_id for d in _sorted(from_onnx)] == [d.class_id for d in _sorted(from_pt)]
        for a, b in zip(_sorted(from_onnx), _sorted(from_pt), strict=True):
            assert max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) <= BOX_TOLERANCE_PX
            assert abs(a.confidence - b.confidence) <= CONFIDENCE_TOLERANCE
            compared += 1
    assert compared >= 10, "too few detections to compare"


def test_onnx_runs_batches_of_any_size_and_shape(onnx_path: Path) -> None:
    onnx = Detector(onnx_path, parse_device("cpu"))
    warm = onnx.warm_up(max_batch=3)
    assert warm.max_batch == 3 and onnx.warmed
    image = decode_image(sorted((FIXTURES / "samples").glob("*.jpg"))[0].read_bytes())
    assert len(onnx.predict_batch([image] * 3, InferenceParams())) == 3


def test_export_refuses_what_it_cannot_do(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        export_weights(model_path, "tflite", None, 640, tmp_path)
    with pytest.raises(ValueError, match="GPU"):
        export_weights(model_path, "engine", None, 640, tmp_path)
    with pytest.raises(ValueError, match=r"\.pt"):
        export_weights(tmp_path / "missing.pt", "onnx", None, 640, tmp_path)
