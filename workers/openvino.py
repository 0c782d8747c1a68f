"""OpenVINO: the CPU backend, compiled for one worker per host, and its telemetry off.

Ultralytics loads an ``*_openvino_model/`` directory with OpenVINO's LATENCY hint; a
worker compiles it again with the settings it means to run, measured on the 2-core
machine at 640 (batch 1 and 4, synchronous calls as the batcher makes them):

- ``PERFORMANCE_HINT: LATENCY`` (one stream on all the worker's cores): 39.6 images/s
  against 20.6 for THROUGHPUT, whose two streams only pay with requests in flight at
  once, and the batcher makes one call at a time.
- ``INFERENCE_NUM_THREADS``: the cores this process may run on (its CPU affinity, which
  a container's cpuset sets), not the host's: a pod on a 64-core node must not start 64.
- ``INFERENCE_PRECISION_HINT``: OpenVINO's own choice by default, which is bf16 on CPUs
  with AVX-512 BF16 or AMX (41.4 against 21.7 images/s for f32, same mAP on the
  fixture's held-out set); ``YOLOQ_OPENVINO_PRECISION=fp32`` forces f32.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

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
    """Compile the model again with the worker's settings (see the module's docstring);
    returns the precision it runs in: int8, bf16, fp32 or fp16."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(
            f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}, not {precision!r}"
        )
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": worker_threads(),
    }
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    # AutoBackend reads through to the format's backend but sets on itself: set there.
    backend = auto_backend.backend
    # Ultralytics compiles through this partial (again per shape on AMX CPUs running a
    # dynamic INT8 model), so every compile it makes uses the worker's settings.
    backend.compile_model = partial(backend.compile_model, config=config)
    xml = next(directory.glob("*.xml"))
    model = backend.ov.Core().read_model(model=str(xml), weights=xml.with_suffix(".bin"))
    backend.ov_compiled_model = backend.compile_model(model)
    if is_quantized(directory):
        return "int8"
    hint = backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return _PRECISION_NAMES.get(str(hint), str(hint))


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
