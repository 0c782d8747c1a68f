"""What a weights file says of itself: task, classes, training size, keypoints.

Read with Ultralytics (so with torch), by the CLI before a push: the registry stores it
beside the weights so the API, which never imports torch, knows every version's task and
classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.openvino import export_metadata, is_openvino_dir, is_quantized
from yoloq.catalog import Task, WeightsInfo


def read_weights_info(path: Path) -> WeightsInfo:
    from ultralytics.models import YOLO

    from workers.model import trained_imgsz

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    fmt = weights_format(path)
    if fmt not in ("pt", "onnx", "torchscript", "openvino", "openvino-int8"):
        raise ValueError(
            f"{path.name}: give .pt, .onnx or .torchscript weights or an OpenVINO export directory"
        )
    task = export_metadata(path).get("task") if fmt.startswith("openvino") else None
    model = YOLO(str(path), task=task)
    names: dict[int, str] = {}
    kpt_shape: Any = None
    kpt_names: Any = None
    version: str | None = None
    input_shape: list[int] | None = None
    if fmt == "pt":
        network: Any = model.model
        names = dict(network.names)
        kpt_shape = getattr(network, "kpt_shape", None)
        kpt_names = getattr(network, "kpt_names", None)
        version = (model.ckpt or {}).get("version")
    else:
        metadata = _export_metadata(path)
        names = {int(k): str(v) for k, v in metadata.get("names", {}).items()}
        kpt_shape = metadata.get("kpt_shape")
        kpt_names = metadata.get("kpt_names")
        version = metadata.get("version")
        dynamic = metadata.get("dynamic") or (metadata.get("args") or {}).get("dynamic")
        if not dynamic and metadata.get("imgsz"):
            input_shape = [int(v) for v in metadata["imgsz"]]
    return WeightsInfo(
        format=fmt,
        precision="int8" if fmt == "openvino-int8" else None,
        task=Task(str(model.task)),
        class_names=names,
        imgsz=trained_imgsz(path, model.overrides),
        input_shape=input_shape,
        ultralytics=version,
        keypoint_names={int(k): list(v) for k, v in kpt_names.items()} if kpt_names else None,
        keypoint_shape=[int(v) for v in kpt_shape] if kpt_shape else None,
    )


def weights_format(path: Path) -> str:
    """The format a weights file or export directory is in: its suffix (pt, onnx,
    engine, ...), or openvino / openvino-int8 (an INT8 OpenVINO export)."""
    if is_openvino_dir(path):
        return "openvino-int8" if is_quantized(path) else "openvino"
    return path.suffix.lstrip(".")


def _export_metadata(path: Path) -> dict[str, Any]:
    """The metadata Ultralytics writes into an export (ONNX custom metadata, the
    TorchScript's extra file, OpenVINO's metadata.yaml), parsed as Ultralytics' own
    backends parse it."""
    import ast
    import json

    if path.is_dir():
        return export_metadata(path)
    raw: dict[str, str] = {}
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        raw = dict(session.get_modelmeta().custom_metadata_map)
    else:
        import torch

        extra = {"config.txt": ""}
        torch.jit.load(str(path), _extra_files=extra, map_location="cpu")  # type: ignore[no-untyped-call]
        if extra["config.txt"]:
            return dict(json.loads(extra["config.txt"]))
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed
