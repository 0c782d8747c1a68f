"""Wiring the model to the batcher: what one input is, and which inputs may share a batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from workers.batcher import Batcher
from workers.model import Detector, Prepared
from yoloq.schemas import Detection, InferenceParams


@dataclass(frozen=True)
class InferenceInput:
    image: Prepared
    params: InferenceParams


@dataclass(frozen=True)
class BatchOutput:
    detections: list[Detection]
    inference_s: float
    """Seconds the model call took for the whole batch this image was in."""
    batch_images: int
    finished_at: float
    """``time.perf_counter()`` when the batch finished."""


def batch_key(item: InferenceInput) -> Hashable:
    # One model call takes one input shape and one set of parameters. Images of other
    # sizes that letterbox to the same input share a batch.
    return item.image.pixels.shape, item.params.model_dump_json()


def make_batcher(
    detector: Detector,
    max_batch: int,
    max_delay_s: float,
    on_batch: Callable[[int, float], None] | None = None,
) -> Batcher[InferenceInput, BatchOutput]:
    def run_batch(items: list[InferenceInput]) -> list[BatchOutput]:
        started = time.perf_counter()
        found = detector.predict_prepared([item.image for item in items], items[0].params)
        finished = time.perf_counter()
        return [
            BatchOutput(detections, finished - started, len(items), finished)
            for detections in found
        ]

    return Batcher(
        run_batch,
        max_batch=max_batch,
        max_delay_s=max_delay_s,
        batch_key=batch_key,
        on_batch=on_batch,
        name="batcher",
    )
