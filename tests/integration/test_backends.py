"""Backends: ONNX Runtime and TorchScript, exported with ``yoloq export``, agree with the
.pt they came from; and batching never changes what an image gets.

Tolerance: boxes within 1 px and confidences within 0.005 — the float32 arithmetic of two
runtimes, not a change in what is found.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import FIXTURES
from workers.device import parse_device
from workers.export import export_weights
from workers.images import decode_image
from workers.model import Detector
from yoloq.results import Detection
from yoloq.schemas import InferenceParams

BOX_TOLERANCE_PX = 1.0
CONFIDENCE_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def onnx_path(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(model_path, "onnx", tmp_path_factory)


def _export(model_path: Path, fmt: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(fmt) / f"{model_path.stem}.{fmt}"
    return export_weights(model_path, fmt, out, None, tmp_path_factory.mktemp("cache"))


def _sorted(found: list[Detection]) -> list[Detection]:
    return sorted(found, key=lambda d: (d.class_id, d.box[0], d.box[1]))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_matches_pt_on_the_sample_images(
    fmt: str, model_path: Path, onnx_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exported_path = onnx_path if fmt == "onnx" else _export(model_path, fmt, tmp_path_factory)
    assert exported_path.is_file() and exported_path.suffix == f".{fmt}"
    cpu = parse_device("cpu")
    pt, exported = Detector(model_path, cpu), Detector(exported_path, cpu)
    assert exported.names == pt.names
    if fmt == "onnx":
        assert exported.default_imgsz == pt.default_imgsz  # the export carries the training size
    params = InferenceParams(imgsz=pt.default_imgsz)
    compared = 0
    for path in sorted((FIXTURES / "samples").glob("*.jpg")):
        image = decode_image(path.read_bytes())
        from_pt = pt.predict_batch([image], params)[0].detections
        from_export = exported.predict_batch([image], params)[0].detections
        assert [d.class_id for d in _sorted(from_export)] == [d.class_id for d in _sorted(from_pt)]
        for a, b in zip(_sorted(from_export), _sorted(from_pt), strict=True):
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


def test_images_of_other_sizes_share_a_batch_and_get_what_they_get_alone(
    model_path: Path,
) -> None:
    detector = Detector(model_path, parse_device("cpu"))
    params = InferenceParams()
    image = decode_image(sorted((FIXTURES / "samples").glob("*.jpg"))[0].read_bytes())
    twice = cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2)).astype(np.uint8)
    small, large = detector.prepare(image, params), detector.prepare(twice, params)
    # Both letterbox to the same model input, so the batcher may put them together.
    assert small.pixels.shape == large.pixels.shape
    together = [p.detections for p in detector.predict_prepared([small, large], params)]
    alone = [detector.predict_prepared([p], params)[0].detections for p in (small, large)]
    assert len(together[0]) >= 3
    for batched, single in zip(together, alone, strict=True):
        assert [d.class_id for d in batched] == [d.class_id for d in single]
        for a, b in zip(batched, single, strict=True):
            assert max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) <= 0.01
            assert abs(a.confidence - b.confidence) <= 1e-4
    # The large image's boxes are the small one's, twice over: scaled back to each image.
    for a, b in zip(together[0], together[1], strict=True):
        assert max(abs(2 * x - y) for x, y in zip(a.box, b.box, strict=True)) <= 2.0


def test_export_refuses_what_it_cannot_do(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        export_weights(model_path, "tflite", None, 640, tmp_path)
    with pytest.raises(ValueError, match="GPU"):
        export_weights(model_path, "engine", None, 640, tmp_path)
    with pytest.raises(ValueError, match=r"\.pt"):
        export_weights(tmp_path / "missing.pt", "onnx", None, 640, tmp_path)
