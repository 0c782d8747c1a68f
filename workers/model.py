"""Loading the model, warming it up, and running it.

Ultralytics is imported only after ``configure_offline`` so it never reaches for the
network (settings sync, hub, font or weight downloads, pip auto-installs).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.device import Device, check_torch_sees
from workers.images import Image
from workers.openvino import (
    compile_for_worker,
    decline_telemetry,
    export_metadata,
    is_openvino_dir,
    parallel_streams,
)
from workers.postprocess import Head, Prediction, postprocess
from yoloq.catalog import Task
from yoloq.model_files import sha256_of
from yoloq.object_store import ObjectStore
from yoloq.schemas import InferenceParams

log = logging.getLogger(__name__)


def configure_offline(config_dir: Path) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    decline_telemetry()


def resolve_weights(spec: str, store: ObjectStore, cache_dir: Path) -> Path:
    """A local file or export directory as is; ``s3://bucket/key`` downloaded once into
    the cache, and ``s3://bucket/prefix/`` (an export directory) likewise.

    The cache entry is named by the objects' ETags, so a new upload under the same key is
    fetched again and an unchanged one never is.
    """
    if not spec.startswith("s3://"):
        path = Path(spec).expanduser()
        if not path.is_file() and not is_openvino_dir(path):
            raise FileNotFoundError(f"model weights {spec!r} not found")
        return path
    bucket, _, key = spec.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"model URI must be s3://bucket/key, not {spec!r}")
    if key.endswith("/"):
        return _download_directory(store, bucket, key, cache_dir)
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


def _download_directory(store: ObjectStore, bucket: str, prefix: str, cache_dir: Path) -> Path:
    """An export directory under ``prefix``, cached under a name made of its objects'
    keys and ETags and renamed into place whole."""
    import hashlib
    import shutil

    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    objects = sorted(
        (item["Key"], item["ETag"].strip('"'))
        for page in pages
        for item in page.get("Contents", [])
    )
    if not objects:
        raise FileNotFoundError(f"no model files under s3://{bucket}/{prefix}")
    listing = hashlib.sha256(repr(objects).encode()).hexdigest()[:32]
    name = Path(prefix.rstrip("/")).name
    cached = cache_dir / "models" / bucket / f"{listing}-{name}"
    if cached.is_dir():
        return cached
    partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.part")
    log.info("downloading model s3://%s/%s (%d files)", bucket, prefix, len(objects))
    try:
        for key, _ in objects:
            target = partial / key.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            store.client.download_file(bucket, key, str(target))
        try:
            partial.rename(cached)
        except OSError:
            if not cached.is_dir():  # another worker's download got there first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return cached


def trained_imgsz(weights: Path, overrides: dict[str, Any]) -> int:
    """The size the model was trained (or exported) at: what it sees best, and what
    Ultralytics itself predicts at for .pt weights when no size is given."""
    size: Any = overrides.get("imgsz")
    if size is None and is_openvino_dir(weights):
        size = export_metadata(weights).get("imgsz")
    if size is None and weights.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
        raw = session.get_modelmeta().custom_metadata_map.get("imgsz")
        size = json.loads(raw) if raw else None
    if isinstance(size, list | tuple):
        size = max(size)
    if not size:
        log.info("%s does not say its training size; using 640", weights.name)
        return 640
    return int(size)


CPU_BATCH_CANDIDATES = (1, 2, 4, 8)
WARM_ASPECTS = (1.0, 3 / 4, 9 / 16)
"""Height over width of the frames a worker warms on: square, and landscape camera frames
(640x480, 1920x1080)."""
GPU_BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)


def choose_max_batch(per_image_s: dict[int, float], noise: float = 0.05, at_least: int = 1) -> int:
    """The largest batch size within ``noise`` (a busy machine's) of the cheapest per
    image, and no less than ``at_least``: the backend's parallel streams, which a smaller
    batch would leave idle under load whatever an idle machine measured. A larger batch
    costs a lone image nothing, since the batcher waits only for images it knows are
    coming; under load it spreads per-call work that blank warm-up images understate."""
    cheapest = min(per_image_s.values())
    chosen = max(size for size, cost in per_image_s.items() if cost <= (1 + noise) * cheapest)
    return max(chosen, at_least)


@dataclass(frozen=True)
class WarmUp:
    max_batch: int
    per_image_s: dict[int, float]
    """Measured cost per image by batch size; empty when the batch size was given."""
    seconds: float
    imgsz: int
    """The inference size the batch sizes were measured at."""


@dataclass(frozen=True)
class Prepared:
    """An image letterboxed to the model's input on an I/O thread, ready to batch."""

    pixels: Image
    """Letterboxed, still height x width x 3 BGR uint8: the cheapest form to stack and to
    copy to a GPU, where the rest of the conversion runs."""
    original_shape: tuple[int, int]
    """Height and width of the decoded image, which boxes are scaled back to."""


class Detector:
    """One loaded model on one device, of any Ultralytics task.

    Inference is Ultralytics' own, in two halves: ``prepare`` letterboxes one image
    exactly as Ultralytics' predictor would (any thread may call it), and
    ``predict_prepared`` runs a batch through the predictor's backend and its NMS (only
    the batcher thread calls it). So the I/O threads do the per-image work and the thread
    that owns the model does nothing else.
    """

    def __init__(self, weights: Path, device: Device, openvino_precision: str = "auto") -> None:
        import torch
        from ultralytics.models import YOLO

        self.device = device
        self.weights = weights
        self.sha256 = sha256_of(weights)
        self.torch_device = torch.device(device.torch_device)
        check_torch_sees(device)
        # An export directory in the cache is named by its digest, which tells Ultralytics
        # nothing of its task: its metadata does.
        task = export_metadata(weights).get("task") if is_openvino_dir(weights) else None
        self.model = YOLO(str(weights), task=task)
        self.task = Task(str(self.model.task))
        self.names: dict[int, str] = dict(self.model.names)
        self.default_imgsz = trained_imgsz(weights, self.model.overrides)
        # FP16 on the GPU (about twice the throughput, same detections to ~1e-3); the CPU
        # has no fast FP16 path.
        self.precision = "fp16" if device.is_cuda else "fp32"
        # One call through Ultralytics builds its predictor: the backend for this format
        # on this device, in this precision, fused and warmed as Ultralytics does it.
        blank = np.zeros((self.default_imgsz, self.default_imgsz, 3), dtype=np.uint8)
        self.model.predict(blank, device=self.torch_device, quantize=self.precision, verbose=False)
        assert self.model.predictor is not None
        self.backend: Any = self.model.predictor.model
        # The predictor's own rule: a rectangle (the smallest stride-aligned one) for
        # PyTorch and dynamic exports, the export's fixed size otherwise.
        dynamic = bool(getattr(self.backend, "dynamic", False))
        self.rect: bool = self.backend.format == "pt" or (dynamic and self.backend.format != "imx")
        self.fixed_imgsz: Any = None if dynamic else getattr(self.backend, "imgsz", None)
        self.format: str = self.backend.format
        self.streams: int = 1
        """Model calls the backend runs at once, each on a slice of the batch."""
        if self.format == "openvino":
            self.precision = compile_for_worker(self.backend, weights, openvino_precision)
            self.streams = parallel_streams(self.backend)
        self.head: Head = Head(
            task=self.task,
            names=self.names,
            end2end=bool(getattr(self.backend, "end2end", False)),
            keypoint_shape=_keypoint_shape(self.backend, self.model),
            keypoint_names=_keypoint_names(self.backend, self.model),
        )
        self._transforms: dict[int | None, Any] = {}
        """The resize per requested ``imgsz`` (a LetterBox; for a classify model its resize
        and centre crop): they keep no state between calls, so every I/O thread shares one
        instead of building it (and checking the size) per image."""
        self._normalize: Any = None
        if self.task is Task.CLASSIFY:
            self._normalize = _classify_transforms(self.input_shape(None))[1]
        self.warmed: bool = False

    def warm_up(self, max_batch: int | None, imgsz: int | None = None) -> WarmUp:
        """Choose the batch size (unless given) and run every size the batcher may use,
        so no request pays for a lazy set-up or a batch size run for the first time.

        ``imgsz`` is the size requests will ask for (default: the training size). The
        batch size must be measured there: cost per image does not scale alike with
        batch size at every input size (on 2 CPU cores a batch of 8 is the cheapest per
        image at 256 and dearer than a batch of 4 at 640). Every batch size is also run
        at the training size, which jobs with ``imgsz: null`` use.
        """
        started = time.perf_counter()
        imgsz = imgsz or self.default_imgsz
        self._set_cpu_threads()
        per_image_s: dict[int, float] = {}
        if max_batch is None:
            candidates = GPU_BATCH_CANDIDATES if self.device.is_cuda else CPU_BATCH_CANDIDATES
            per_image_s = self._per_image_seconds(candidates, imgsz)
            max_batch = choose_max_batch(per_image_s, at_least=self.streams)
        frames = {size: self._warm_shapes(size) for size in (imgsz, self.default_imgsz)}
        for size in range(1, max_batch + 1):
            for warm_size, shapes in frames.items():
                for shape in shapes:
                    self._run_blank(size, warm_size, shape)
        self.warmed = True
        return WarmUp(max_batch, per_image_s, time.perf_counter() - started, imgsz)

    def _warm_shapes(self, imgsz: int) -> list[tuple[int, int]]:
        """Blank frames of the common aspect ratios that letterbox to different inputs.
        A dynamic-shape backend (the .pt, an OpenVINO or ONNX export) sets up each new
        input shape on its first call: at 640 an OpenVINO INT8 model took 53 ms for its
        first 480x640 image against 18 after, and a worker warmed only on squares made
        its first job pay that for every batch size."""
        shapes: dict[tuple[int, ...], tuple[int, int]] = {}
        for height_over_width in WARM_ASPECTS:
            frame = (round(imgsz * height_over_width), imgsz)
            letterboxed = self.prepare(
                np.zeros((*frame, 3), np.uint8), InferenceParams(imgsz=imgsz)
            )
            shapes.setdefault(letterboxed.pixels.shape, frame)
        return list(shapes.values())

    def _run_blank(self, size: int, imgsz: int, frame: tuple[int, int] | None = None) -> None:
        blank = np.zeros((*(frame or (imgsz, imgsz)), 3), dtype=np.uint8)
        self.predict_batch([blank] * size, InferenceParams(imgsz=imgsz))

    def _per_image_seconds(
        self, sizes: tuple[int, ...], imgsz: int, rounds: int = 4
    ) -> dict[int, float]:
        """Seconds per image at each batch size: the fastest of a few rounds. Sizes take
        turns within each round, so a burst of load elsewhere on the machine, or the
        first slow calls after a thread-count change, cannot fall on one size alone; the
        fastest round is kept because other processes only ever add time."""
        for size in sizes:
            self._run_blank(size, imgsz)
        best = dict.fromkeys(sizes, float("inf"))
        for _ in range(rounds):
            for size in sizes:
                started = time.perf_counter()
                self._run_blank(size, imgsz)
                best[size] = min(best[size], (time.perf_counter() - started) / size)
        return best

    def _set_cpu_threads(self) -> None:
        """All cores for torch when torch runs the model; one when another runtime does
        (ONNX Runtime has its own pool), so torch's few operations around it (the uint8
        conversion, NMS) leave no OpenMP threads spinning on the cores that runtime uses."""
        if self.device.is_cuda:
            return
        import torch

        # Ultralytics resets torch to (cores - 1) threads when its predictor starts on the
        # CPU, which is one thread on a 2-core machine: half the throughput.
        torch_runs_it = self.backend.format in ("pt", "torchscript")
        torch.set_num_threads((os.cpu_count() or 1) if torch_runs_it else 1)

    def input_shape(self, imgsz: int | None) -> tuple[int, int]:
        """The model input (height, width) a request's ``imgsz`` means, as Ultralytics
        checks it: stride-aligned, or the export's own size for a fixed-shape export."""
        from ultralytics.utils.checks import check_imgsz

        size = self.fixed_imgsz or imgsz or self.default_imgsz
        height, width = check_imgsz(size, stride=self.backend.stride, min_dim=2)  # type: ignore[no-untyped-call]
        return int(height), int(width)

    def prepare(self, image: Image, params: InferenceParams) -> Prepared:
        """Resize one image for the model, as Ultralytics' predictor of its task does: a
        letterbox, or for a classify model a resize and centre crop. Thread-safe."""
        transform = self._transforms.get(params.imgsz)
        if transform is None:  # two threads may both build one: equal either way
            transform = self._build_transform(params.imgsz)
            self._transforms[params.imgsz] = transform
        if self.task is Task.CLASSIFY:
            from PIL import Image as PILImage

            # Ultralytics resizes the BGR array as it is (channel order does not matter to
            # a resize) and leaves uint8 BGR for the conversion on the device.
            pixels = np.asarray(transform(PILImage.fromarray(image)))
        else:
            pixels = transform(image=image)
        assert isinstance(pixels, np.ndarray)
        height, width = image.shape[:2]
        return Prepared(pixels, (height, width))

    def _build_transform(self, imgsz: int | None) -> Any:
        if self.task is Task.CLASSIFY:
            return _classify_transforms(self.input_shape(imgsz))[0]
        from ultralytics.data.augment import LetterBox

        return LetterBox(self.input_shape(imgsz), auto=self.rect, stride=self.backend.stride)

    def predict_batch(self, images: list[Image], params: InferenceParams) -> list[Prediction]:
        """Results for a list of images (prepared here, on the calling thread)."""
        return self.predict_prepared([self.prepare(image, params) for image in images], params)

    def predict_prepared(self, batch: list[Prepared], params: InferenceParams) -> list[Prediction]:
        """Results for prepared images of one input shape, in one model call. Not
        thread-safe: only the batcher thread calls it once the worker runs.

        Each image is letterboxed alone, to the smallest stride-aligned rectangle, as
        Ultralytics does a single image, so the service returns what
        ``YOLO(weights).predict(image)`` returns in the lab whatever it was batched with.
        """
        import torch

        if len({item.pixels.shape for item in batch}) > 1:
            raise ValueError("predict_prepared takes images of one input shape")
        with torch.inference_mode():
            if self.device.is_cuda:
                inputs = self._to_device([item.pixels for item in batch])
                # What Ultralytics' preprocess does once the uint8 batch is on the device.
                inputs = inputs.permute(0, 3, 1, 2).contiguous().flip(1)  # BHWC BGR -> BCHW RGB
                inputs = (inputs.half() if self.backend.fp16 else inputs.float()).div_(255)
            else:
                inputs = torch.from_numpy(model_input([item.pixels for item in batch]))
                inputs = inputs.half() if self.backend.fp16 else inputs
            if self._normalize is not None:
                inputs = self._normalize(inputs)
            raw = self.backend(inputs)
            return postprocess(
                self.head,
                raw,
                (int(inputs.shape[2]), int(inputs.shape[3])),
                [item.original_shape for item in batch],
                params,
            )

    def _to_device(self, pixels: list[Image]) -> Any:
        """Stack the batch as uint8 (a quarter of the bytes of float) straight into pinned
        memory, which the GPU reads by DMA, and copy it without blocking the thread: the
        conversion and the forward pass queue up behind the copy on the same stream."""
        import torch

        host = torch.empty((len(pixels), *pixels[0].shape), dtype=torch.uint8, pin_memory=True)
        np.stack(pixels, out=host.numpy())
        return host.to(self.torch_device, non_blocking=True)


def model_input(pixels: list[Image]) -> npt.NDArray[np.float32]:
    """Letterboxed BGR uint8 images (height x width x 3, one shape) as the BCHW RGB float32
    batch in [0, 1] that Ultralytics' preprocess makes, bit for bit. On the CPU it is one
    pass per image into the batch, where torch's permute, copy, flip, convert and divide
    are five over the whole batch: 2.5 against 5.5 ms for four 480x640 images on one
    thread, time the batcher thread spends while the model waits."""
    height, width, _ = pixels[0].shape
    batch = np.empty((len(pixels), 3, height, width), np.float32)
    for i, image in enumerate(pixels):
        np.divide(image[..., ::-1].transpose(2, 0, 1), np.float32(255), out=batch[i])
    return batch


def _classify_transforms(input_shape: tuple[int, int]) -> tuple[Any, Any]:
    """Ultralytics' classify transforms at this size, split as its predictor splits them:
    the resize and centre crop (on the host, per image) and the normalisation (on the
    device, per batch, after the uint8 to float conversion)."""
    import torchvision.transforms as T
    from ultralytics.data.augment import classify_transforms

    steps = classify_transforms(input_shape).transforms
    kinds = tuple(type(step) for step in steps)
    if kinds != (T.Resize, T.CenterCrop, T.ToTensor, T.Normalize):
        raise RuntimeError(f"unexpected Ultralytics classify transforms: {kinds}")
    return T.Compose(steps[:2]), steps[-1]


def _keypoint_shape(backend: Any, model: Any) -> tuple[int, ...] | None:
    shape = getattr(backend, "kpt_shape", None) or getattr(model.model, "kpt_shape", None)
    return tuple(int(v) for v in shape) if shape else None


def _keypoint_names(backend: Any, model: Any) -> list[str] | None:
    """The names of a pose model's keypoints (Ultralytics keeps them per class; a pose
    model here has one set for all its classes)."""
    names = getattr(backend, "kpt_names", None) or getattr(model.model, "kpt_names", None)
    if not names:
        return None
    first = names[min(names)] if isinstance(names, dict) else names
    return [str(name) for name in first]
