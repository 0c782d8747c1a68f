"""Wiring the models to the batcher: what one input is, and which inputs may share a batch.

One batcher thread runs every model the worker serves, so the models never compete for
the device (or, on a CPU, for its cores); a batch holds images of one model only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from workers import metrics
from workers.batcher import Batcher
from workers.model import Prepared
from workers.postprocess import Prediction
from workers.serving import ServedModel
from yoloq.schemas import InferenceParams


@dataclass(frozen=True)
class InferenceInput:
    model: ServedModel
    image: Prepared
    params: InferenceParams


@dataclass(frozen=True)
class BatchOutput:
    prediction: Prediction
    inference_s: float
    """Seconds the model call took for the whole batch this image was in."""
    batch_images: int
    finished_at: float
    """``time.perf_counter()`` when the batch finished."""


def batch_key(item: InferenceInput) -> Hashable:
    # One model call takes one model, one input shape and one set of parameters. Images
    # of other sizes that letterbox to the same input share a batch.
    return item.model.id, item.image.pixels.shape, item.params.model_dump_json()


BATCH_CAP = 1024
"""The batcher's own bound; each model's measured (or set) batch size is the real one."""


def make_batcher(
    max_delay_s: float,
    on_batch: Callable[[int, float], None] | None = None,
) -> Batcher[InferenceInput, BatchOutput]:
    def run_batch(items: list[InferenceInput]) -> list[BatchOutput]:
        started = time.perf_counter()
        detector = items[0].model.detector
        found = detector.predict_prepared([item.image for item in items], items[0].params)
        finished = time.perf_counter()
        items[0].model.batch_sizes[len(items)] += 1
        labels = items[0].model.labels
        metrics.BATCH_IMAGES.labels(*labels).observe(len(items))
        metrics.STAGE_SECONDS.labels(*labels, "inference").observe(finished - started)
        return [
            BatchOutput(prediction, finished - started, len(items), finished)
            for prediction in found
        ]

    return Batcher(
        run_batch,
        max_batch=BATCH_CAP,
        max_delay_s=max_delay_s,
        batch_key=batch_key,
        batch_limit=lambda item: item.model.max_batch,
        on_batch=on_batch,
        name="batcher",
    )
