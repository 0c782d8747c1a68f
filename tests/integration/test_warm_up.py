"""Warm-up measures batch sizes at the size requests will ask for, not only the training size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.device import parse_device
from workers.model import CPU_BATCH_CANDIDATES, Detector, Prepared, choose_max_batch
from workers.postprocess import Prediction
from yoloq.schemas import InferenceParams


def test_warm_up_measures_at_the_size_it_is_given(model_path: Path) -> None:
    detector = Detector(model_path, parse_device("cpu"))
    served = detector.default_imgsz + 64
    warm = detector.warm_up(max_batch=None, imgsz=served)
    assert warm.imgsz == served and detector.warmed
    assert set(warm.per_image_s) == set(CPU_BATCH_CANDIDATES)
    assert warm.max_batch in CPU_BATCH_CANDIDATES


def test_warm_up_defaults_to_the_training_size(model_path: Path) -> None:
    detector = Detector(model_path, parse_device("cpu"))
    warm = detector.warm_up(max_batch=2)
    assert warm.imgsz == detector.default_imgsz
    assert warm.max_batch == 2 and warm.per_image_s == {}


def test_the_largest_batch_within_the_noise_of_the_cheapest_is_kept() -> None:
    assert choose_max_batch({1: 0.050, 2: 0.038, 4: 0.0382, 8: 0.049}) == 4
    assert choose_max_batch({1: 0.040, 2: 0.044, 4: 0.046}) == 1
    assert choose_max_batch({1: 0.010, 2: 0.0104, 4: 0.0105, 8: 0.0104}) == 8
    assert choose_max_batch({1: 0.030}) == 1
    # Two streams: a batch of one would leave one idle under load.
    assert choose_max_batch({1: 0.040, 2: 0.044, 4: 0.046}, at_least=2) == 2
    assert choose_max_batch({1: 0.050, 2: 0.038, 4: 0.0382}, at_least=2) == 4


def test_warm_up_runs_every_batch_size_on_camera_frames_too(model_path: Path) -> None:
    """A dynamic-shape backend sets up each new input shape on its first call, so the
    warm-up runs landscape frames (4:3, 16:9) as well as squares at every batch size."""
    detector = Detector(model_path, parse_device("cpu"))
    seen: set[tuple[int, tuple[int, ...]]] = set()
    run = detector.predict_prepared

    def recording(batch: list[Prepared], params: InferenceParams) -> list[Prediction]:
        seen.add((len(batch), batch[0].pixels.shape))
        return run(batch, params)

    detector.predict_prepared = recording  # type: ignore[method-assign]
    size = detector.default_imgsz
    detector.warm_up(max_batch=2, imgsz=size)
    frames = [(size, size), (size * 3 // 4, size), (size * 9 // 16, size)]
    inputs = {
        detector.prepare(np.zeros((*f, 3), np.uint8), InferenceParams()).pixels.shape
        for f in frames
    }
    assert len(inputs) == 3, inputs
    assert {(n, shape) for n in (1, 2) for shape in inputs} <= seen
