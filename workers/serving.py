"""What a worker serves: model references resolved to files, loaded and warmed.

A worker serves one or more model versions (``YOLOQ_MODEL`` / ``yoloq worker --model``):
registry references (``parts-seg@production``, ``defects:3``, ``traffic``) or, as before
the registry, one weights file (a path or ``s3://bucket/key``). Each version has a queue
of its own (``yoloq.keys.queue_name(id)``), and results carry which version ran them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workers import metrics
from workers.device import Device
from workers.memory import MIB, Measurement, MemoryBudget, ModelDoesNotFit
from workers.model import Detector, WarmUp, resolve_weights
from workers.weights_info import weights_format
from yoloq.catalog import ModelReference, ModelVersion
from yoloq.model_files import size_of
from yoloq.object_store import ObjectStore
from yoloq.registry import ModelRegistry
from yoloq.results import ResultItem, new_item
from yoloq.schemas import ImageRef, ServedModelInfo
from yoloq.settings import Settings

log = logging.getLogger(__name__)

WEIGHTS_SUFFIXES = (".pt", ".onnx", ".torchscript", ".engine", ".mlpackage", "_model")


def is_weights_file(spec: str) -> bool:
    """A path or an ``s3://`` URI, rather than a registry reference."""
    return spec.startswith("s3://") or "/" in spec or spec.endswith(WEIGHTS_SUFFIXES)


def model_specs(text: str) -> list[str]:
    """``YOLOQ_MODEL``: registry references separated by commas, or one weights file."""
    specs = [part.strip() for part in text.split(",") if part.strip()]
    if not specs:
        raise ValueError("no model given: set YOLOQ_MODEL or pass --model")
    files = [spec for spec in specs if is_weights_file(spec)]
    if files and len(specs) > 1:
        raise ValueError(
            f"a worker serves one weights file or registry references, not both ({text!r}): "
            "push the file with `yoloq models push` to serve it beside others"
        )
    return specs


@dataclass(frozen=True)
class ModelSource:
    """One version to load: where its weights are and how it is named."""

    id: str
    name: str
    version: int | None
    weights: Path
    format: str


def resolve_sources(
    specs: list[str], settings: Settings, store: ObjectStore, registry: ModelRegistry
) -> list[ModelSource]:
    """Every version the references name (all the versions of a split alias), with its
    weights downloaded into the cache."""
    sources: dict[str, ModelSource] = {}
    for spec in specs:
        if is_weights_file(spec):
            name = settings.queue_model_name
            weights = resolve_weights(spec, store, settings.cache_dir)
            sources[name] = ModelSource(name, name, None, weights, weights_format(weights))
            continue
        reference = ModelReference.parse(spec)
        for version in registry.card(reference.name).serving(reference):
            sources[version.id] = version_source(version, settings, registry)
    return list(sources.values())


def version_source(
    version: ModelVersion, settings: Settings, registry: ModelRegistry
) -> ModelSource:
    file = version.file(settings.model_format)
    weights = registry.download(version, file.format, settings.cache_dir)
    return ModelSource(version.id, version.name, version.version, weights, file.format)


@dataclass
class ServedModel:
    """One model version loaded on this worker's device, warm."""

    source: ModelSource
    detector: Detector
    warm: WarmUp
    memory_bytes: int = 0
    """What it took on the device, measured at warm-up."""
    draining: bool = False
    """Its alias moved on: the worker finishes its queue, then unloads it."""
    batch_sizes: Counter[int] = field(default_factory=Counter)
    """Batches of it run, by size (written by the batcher thread only)."""

    @property
    def id(self) -> str:
        return self.source.id

    @property
    def max_batch(self) -> int:
        return self.warm.max_batch

    @property
    def labels(self) -> tuple[str, str]:
        """Its Prometheus labels: model and version."""
        version = self.source.version
        return self.source.name, "" if version is None else str(version)

    def info(self) -> ServedModelInfo:
        return ServedModelInfo(
            id=self.id,
            name=self.source.name,
            version=self.source.version,
            sha256=self.detector.sha256,
            task=self.detector.task,
            format=self.source.format,
            precision=self.detector.precision,
            max_batch=self.max_batch,
            memory_bytes=self.memory_bytes,
            warmed=self.detector.warmed,
            batch_sizes=dict(sorted(self.batch_sizes.items())),
            draining=self.draining,
        )

    def new_item(self, index: int, ref: ImageRef, **fields: object) -> ResultItem:
        """An image's result as this version's: the item type of its task, naming the
        model, version and weights that ran it."""
        return new_item(
            self.detector.task,
            index=index,
            bucket=ref.bucket,
            key=ref.key,
            model=self.source.name,
            version=self.source.version,
            sha256=self.detector.sha256,
            format=self.source.format,
            precision=self.detector.precision,
            **fields,
        )


def load_served(
    source: ModelSource,
    device: Device,
    max_batch: int | None,
    imgsz: int | None,
    budget: MemoryBudget,
    openvino_precision: str = "auto",
) -> ServedModel:
    """Load and warm one version, measuring its memory; ModelDoesNotFit if it takes the
    worker past its budget. Call it on a passing thread (``workers.main``)."""
    import gc

    measurement = Measurement(device).start()
    try:
        detector = Detector(source.weights, device, openvino_precision)
        warm = detector.warm_up(max_batch=max_batch, imgsz=imgsz)
    except RuntimeError as error:
        if "out of memory" not in str(error).lower():
            raise
        raise ModelDoesNotFit(
            f"model {source.id} does not fit on {device.requested}: {error}"
        ) from error
    # Resident memory can grow by less than the weights when the allocator reuses what an
    # earlier model's warm-up freed; the loaded weights take at least their file's size.
    measured = max(measurement.stop(), size_of(source.weights))
    try:
        budget.admit(source.id, measured, device)
    except ModelDoesNotFit:
        del detector
        gc.collect()
        raise
    log.info(
        "model %s (%s, %s %s, sha256 %s) loaded on %s: %.0f MiB",
        source.id,
        detector.task,
        source.format,
        detector.precision,
        detector.sha256[:12],
        device.requested,
        measured / MIB,
    )
    costs = ", ".join(f"{size}: {1000 * s:.1f} ms" for size, s in warm.per_image_s.items())
    log.info(
        "model %s warmed in %.1fs at imgsz %d; max batch %d%s",
        source.id,
        warm.seconds,
        warm.imgsz,
        warm.max_batch,
        f" (per-image cost by batch size: {costs})" if costs else " (YOLOQ_MAX_BATCH)",
    )
    served = ServedModel(source, detector, warm, measured)
    metrics.MODEL_WARM.labels(*served.labels).set(1)
    metrics.MODEL_BACKEND.labels(*served.labels, source.format, detector.precision).set(1)
    metrics.MAX_BATCH.labels(*served.labels).set(warm.max_batch)
    metrics.MODEL_MEMORY.labels(*served.labels).set(measured)
    return served


def unload(model: ServedModel, device: Device, budget: MemoryBudget) -> None:
    """Forget a version: its memory goes back to the device."""
    import gc

    budget.release(model.id)
    for gauge in (metrics.MODEL_WARM, metrics.MAX_BATCH, metrics.MODEL_MEMORY):
        gauge.remove(*model.labels)
    metrics.MODEL_BACKEND.remove(*model.labels, model.source.format, model.detector.precision)
    del model
    gc.collect()
    if device.is_cuda:
        import torch

        torch.cuda.empty_cache()
