"""OpenVINO: the CPU backend, compiled for one worker per host, and its telemetry off.

Ultralytics loads an ``*_openvino_model/`` directory with OpenVINO's LATENCY hint and runs
every batch as one synchronous call. A worker compiles it again twice, and runs batches
itself (measured on the 2-core machine at 640, INT8, the model alone):

- a lone image on the ``LATENCY`` compile (one stream on all the worker's cores): it is
  what a single request waits for (60.9 images/s, where one stream of one thread gives
  half that);
- a batch split over the streams of a ``THROUGHPUT`` compile (one thread each), all in
  flight at once: 85.4 images/s for two streams of 2 against 77.5 for the batch of 4 on
  the LATENCY compile. The streams share no barrier, so a core taken for a moment by the
  worker's own I/O threads, Redis or the S3 server delays one stream and not the whole
  call: with another process taking 15% of each core, 75.2 against 61.5.
- ``INFERENCE_NUM_THREADS``: the cores this process may run on (its CPU affinity, which
  a container's cpuset sets), not the host's: a pod on a 64-core node must not start 64.
- ``INFERENCE_PRECISION_HINT``: OpenVINO's own choice by default, which is bf16 on CPUs
  with AVX-512 BF16 or AMX (41.4 against 21.7 images/s for f32, same mAP on the
  fixture's held-out set); ``YOLOQ_OPENVINO_PRECISION=fp32`` forces f32.

On AMX CPUs Ultralytics recompiles a dynamic INT8 model per input shape (an OpenVINO
crash it works around), and an export with a fixed batch size takes no slices: there the
worker keeps Ultralytics' call and only its settings.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger(__name__)

OPENVINO_PRECISIONS = ("auto", "fp32")

_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def is_openvino_dir(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.xml"))


def export_metadata(directory: Path) -> dict[str, Any]:
    """The metadata.yaml Ultralytics writes beside the IR."""
    metadata = directory / "metadata.yaml"
    if not metadata.is_file():
        raise ValueError(f"{directory} has no metadata.yaml: not an Ultralytics OpenVINO export")
    loaded = yaml.safe_load(metadata.read_text())
    return dict(loaded) if isinstance(loaded, dict) else {}


def is_quantized(directory: Path) -> bool:
    """An INT8 export (Ultralytics records ``quantize: 8`` in its arguments)."""
    args = export_metadata(directory).get("args") or {}
    return args.get("quantize") in (8, "8", "int8")


def worker_threads() -> int:
    return len(os.sched_getaffinity(0))


def compile_for_worker(auto_backend: Any, directory: Path, precision: str) -> str:
    """Compile the model again with the worker's settings and run batches over streams
    (see the module's docstring); returns the precision it runs in: int8, bf16, fp32 or
    fp16."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(
            f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}, not {precision!r}"
        )
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": worker_threads()}
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    # AutoBackend reads through to the format's backend but sets on itself: set there.
    backend = auto_backend.backend
    latency = {**config, "PERFORMANCE_HINT": "LATENCY"}
    # Ultralytics compiles through this partial (again per shape on AMX CPUs running a
    # dynamic INT8 model), so every compile it makes uses the worker's settings.
    backend.compile_model = partial(backend.compile_model, config=latency)
    xml = next(directory.glob("*.xml"))
    model = backend.ov.Core().read_model(model=str(xml), weights=xml.with_suffix(".bin"))
    backend.ov_compiled_model = backend.compile_model(model)
    # Slices need a batch dimension of any size; a static export runs its batch whole.
    if backend.read_model is None and model.input().get_partial_shape()[0].is_dynamic:
        streams = backend.compile_model(model, config={**config, "PERFORMANCE_HINT": "THROUGHPUT"})
        forward = StreamedForward(backend.ov_compiled_model, streams)
        if len(forward.requests) > 1:  # one stream (one core) has nothing to split over
            backend.forward = forward
    if is_quantized(directory):
        return "int8"
    hint = backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return _PRECISION_NAMES.get(str(hint), str(hint))


def parallel_streams(auto_backend: Any) -> int:
    """Slices a batch is run in at once: the THROUGHPUT compile's streams, or 1."""
    forward = auto_backend.backend.forward
    return len(forward.requests) if isinstance(forward, StreamedForward) else 1


class StreamedForward:
    """The backend's forward: one image on the LATENCY compile, a batch split into as many
    slices as the THROUGHPUT compile has streams, run at once. Only the batcher thread
    calls it."""

    def __init__(self, latency: Any, streams: Any) -> None:
        self.latency = latency
        self.requests = [
            streams.create_infer_request()
            for _ in range(int(streams.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        ]

    def __call__(self, im: Any) -> list[np.ndarray]:
        batch = im.cpu().numpy().astype(np.float32, copy=False)
        if len(batch) == 1:
            return list(self.latency(batch).values())
        slices = np.array_split(batch, min(len(batch), len(self.requests)))
        running = self.requests[: len(slices)]
        for request, rows in zip(running, slices, strict=True):
            request.start_async({0: rows})
        outputs = []
        for request in running:
            request.wait()
            outputs.append([tensor.data for tensor in request.output_tensors])
        return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


def decline_telemetry() -> None:
    """OpenVINO's converter and NNCF send usage statistics unless a consent file says
    no (no file counts as yes): write that file, ``~/intel/openvino_telemetry``, as
    OpenVINO's own ``opt_in_out --opt_out`` does. A file that says yes is the machine
    owner's choice and is left, with a warning."""
    consent = Path.home() / "intel" / "openvino_telemetry"
    try:
        if consent.is_file():
            if consent.read_text().strip() != "0":
                log.warning("%s allows OpenVINO telemetry; yoloq leaves it as it is", consent)
            return
        consent.parent.mkdir(parents=True, exist_ok=True)
        consent.write_text("0")
    except OSError as error:
        log.warning("could not decline OpenVINO telemetry in %s: %s", consent, error)
