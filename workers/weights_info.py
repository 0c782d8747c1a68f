"""What a weights file says of itself: task, classes, training size, keypoints.

Read with Ultralytics (so with torch), by the CLI before a push: the registry stores it
beside the weights so the API, which never imports torch, knows every version's task and
classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloq.catalog import Task, WeightsInfo


def read_weights_info(path: Path) -> WeightsInfo:
    from ultralytics.models import YOLO

    from workers.model import trained_imgsz

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    model = YOLO(str(path))
    fmt = {".pt": "pt", ".onnx": "onnx", ".torchscript": "torchscript"}.get(path.suffix)
    if fmt is None:
        raise ValueError(f"{path.name}: give .pt, .onnx or .torchscript weights")
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
        if not metadata.get("dynamic") and metadata.get("imgsz"):
            input_shape = [int(v) for v in metadata["imgsz"]]
    return WeightsInfo(
        format=fmt,
        task=Task(str(model.task)),
        class_names=names,
        imgsz=trained_imgsz(path, model.overrides),
        input_shape=input_shape,
        ultralytics=version,
        keypoint_names={int(k): list(v) for k, v in kpt_names.items()} if kpt_names else None,
        keypoint_shape=[int(v) for v in kpt_shape] if kpt_shape else None,
    )


def _export_metadata(path: Path) -> dict[str, Any]:
    """The metadata Ultralytics writes into an export (ONNX custom metadata, or the
    TorchScript's extra file), parsed as Ultralytics' own backends parse it."""
    import ast
    import json

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
