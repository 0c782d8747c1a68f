"""Loading the model, warming it up, and running it.

Ultralytics is imported only after ``configure_offline`` so it never reaches for the
network (settings sync, hub, font or weight downloads, pip auto-installs).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from workers.device import Device
from workers.images import Image
from yoloq.object_store import ObjectStore
from yoloq.schemas import Detection, InferenceParams

log = logging.getLogger(__name__)


def configure_offline(config_dir: Path) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(spec: str, store: ObjectStore, cache_dir: Path) -> Path:
    """A local path as is; ``s3://bucket/key`` downloaded once into the cache.

    The cache entry is named by the object's ETag, so a new upload under the same key is
    fetched again and an unchanged one never is.
    """
    if not spec.startswith("s3://"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model weights {spec!r} not found")
        return path
    bucket, _, key = spec.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"model URI must be s3://bucket/key, not {spec!r}")
    etag = store.client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    cached = cache_dir / "models" / bucket / f"{etag}-{Path(key).name}"
    if cached.is_file():
        log.info("model %s found in cache at %s", spec, cached)
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Unique per download, not per pid: workers in different containers share the cache
    # volume and are all pid 1.
    partial = cached.with_suffix(cached.suffix + f".{uuid.uuid4().hex}.part")
    log.info("downloading model %s", spec)
    store.client.download_file(bucket, key, str(partial))
    partial.replace(cached)  # atomic: a crash never leaves a half file under the real name
    return cached


class Detector:
    """One loaded model on one device. ``predict`` is serialised: Ultralytics' predictor
    keeps per-call state and is not thread-safe."""

    def __init__(self, weights: Path, device: Device) -> None:
        import torch
        from ultralytics.models import YOLO

        self.device = device
        self.weights = weights
        self.sha256 = sha256_of(weights)
        self.torch_device = torch.device(device.torch_device)
        if device.is_cuda and not torch.cuda.is_available():
            raise RuntimeError(
                f"{device.requested} was requested but torch sees no CUDA device "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
            )
        self.model = YOLO(str(weights), task="detect")
        self.names: dict[int, str] = dict(self.model.names)
        self.half = device.is_cuda
        self._lock = threading.Lock()
        self.warmed = False

    def warm_up(self, imgsz: int, batch_sizes: list[int]) -> float:
        """Run dummy batches so the first real request meets no lazy set-up or cold kernel."""
        started = time.perf_counter()
        blank = np.zeros((imgsz, imgsz, 3), dtype=np.uint8)
        for size in batch_sizes:
            self.predict([blank] * size, InferenceParams(imgsz=imgsz))
        self._use_all_cores()
        self.warmed = True
        return time.perf_counter() - started

    def _use_all_cores(self) -> None:
        # Ultralytics resets torch to (cores - 1) threads when its predictor starts on the
        # CPU, which is one thread on a 2-core machine: half the throughput.
        if not self.device.is_cuda:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)

    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def predict(self, images: list[Image], params: InferenceParams) -> list[list[Detection]]:
        """Detections for each image, in order.

        Images are batched by shape. Ultralytics letterboxes a batch of one shape to the
        smallest stride-aligned rectangle, exactly as it does a single image; a batch of
        mixed shapes is padded to a square instead, which moves boxes and confidences. So
        a same-shape batch returns what ``YOLO(weights).predict(image)`` returns in the lab.
        """
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(position)
        found: list[list[Detection]] = [[] for _ in images]
        with self._lock:
            for positions in by_shape.values():
                results = self.model.predict(
                    [images[p] for p in positions],
                    conf=params.conf,
                    iou=params.iou,
                    imgsz=params.imgsz,
                    max_det=params.max_det,
                    classes=params.classes,
                    device=self.torch_device,
                    half=self.half,
                    verbose=False,
                )
                for position, result in zip(positions, results, strict=True):
                    found[position] = self._detections(result)
        return found

    def _detections(self, result: Any) -> list[Detection]:
        boxes = result.boxes
        xyxy = boxes.xyxy.float().cpu().numpy().tolist()
        confidences = boxes.conf.float().cpu().numpy().tolist()
        classes = boxes.cls.int().cpu().numpy().tolist()
        return [
            Detection(
                class_id=int(class_id),
                class_name=self.names.get(int(class_id), str(class_id)),
                confidence=round(float(confidence), 6),
                box=[round(float(v), 2) for v in box],
            )
            for box, confidence, class_id in zip(xyxy, confidences, classes, strict=True)
        ]
