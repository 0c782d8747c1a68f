"""What an export costs in accuracy: its mAP and the .pt's on one labelled set, and the
budget an INT8 export must stay within.

Both are scored by Ultralytics' own validator (``YOLO(...).val``), so the numbers are the
ones its users know, and the export is run the way a worker runs it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from yoloq.catalog import ExportAccuracy
from yoloq.keys import IMAGE_SUFFIXES

DEFAULT_MAX_LOSS = 1.5
"""mAP@0.5 points an INT8 export may lose against its .pt before it is refused."""


class ExportRefused(ValueError):
    """The export lost more accuracy than its budget allows."""


def measure_accuracy(
    weights: Path, exported: Path, data: Path, imgsz: int, max_loss: float = DEFAULT_MAX_LOSS
) -> ExportAccuracy:
    """mAP@0.5 and mAP@0.5:0.95 of the .pt and of its export on the set ``data`` (an
    Ultralytics dataset YAML: its ``val`` split is scored)."""
    if not data.is_file():
        raise ValueError(f"labelled set {data} not found")
    pt = _score(weights, data, imgsz)
    export = _score(exported, data, imgsz, task=pt.task)
    return ExportAccuracy(
        data=str(data),
        imgsz=imgsz,
        images=_count_images(data),
        pt_map50=pt.map50,
        pt_map50_95=pt.map50_95,
        export_map50=export.map50,
        export_map50_95=export.map50_95,
        max_loss=max_loss,
    )


@dataclass(frozen=True)
class _Score:
    map50: float
    map50_95: float
    task: str


def _score(weights: Path, data: Path, imgsz: int, task: str | None = None) -> _Score:
    from ultralytics.models import YOLO

    model = YOLO(str(weights), task=task)
    if model.task == "classify":
        raise ValueError("the accuracy check scores detect, segment, pose and OBB models")
    with tempfile.TemporaryDirectory(prefix="yoloq-val-") as runs:
        metrics = model.val(
            data=str(data),
            imgsz=imgsz,
            batch=1,
            device="cpu",
            plots=False,
            verbose=False,
            project=runs,
            name="val",
        )
    return _Score(float(metrics.box.map50), float(metrics.box.map), str(model.task))


def _count_images(data: Path) -> int:
    from ultralytics.data.utils import check_det_dataset

    split = check_det_dataset(str(data))["val"]
    folders = [Path(p) for p in (split if isinstance(split, list) else [split])]
    return sum(
        1 for folder in folders for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )


def enforce_budget(accuracy: ExportAccuracy, accept_loss: bool) -> ExportAccuracy:
    """The accuracy as recorded; ExportRefused if it lost more than its budget and the
    loss was not accepted."""
    if accuracy.loss_points <= accuracy.max_loss:
        return accuracy
    if not accept_loss:
        raise ExportRefused(
            f"the export scores mAP@0.5 {accuracy.export_map50:.4f} against the .pt's "
            f"{accuracy.pt_map50:.4f} on {accuracy.data}: {accuracy.loss_points:.2f} points "
            f"lost, more than the {accuracy.max_loss} allowed (--max-loss); --accept-loss "
            "keeps it anyway"
        )
    return accuracy.model_copy(update={"accepted_loss": True})


def write_accuracy(exported: Path, accuracy: ExportAccuracy) -> Path:
    """``accuracy.json`` inside an export directory, or ``<file>.accuracy.json`` beside an
    export file."""
    path = exported / "accuracy.json" if exported.is_dir() else Path(f"{exported}.accuracy.json")
    path.write_text(json.dumps(accuracy.model_dump(), indent=2) + "\n")
    return path


def describe(accuracy: ExportAccuracy) -> str:
    return (
        f"mAP@0.5 {accuracy.export_map50:.4f} (.pt {accuracy.pt_map50:.4f}), "
        f"mAP@0.5:0.95 {accuracy.export_map50_95:.4f} (.pt {accuracy.pt_map50_95:.4f}) "
        f"at imgsz {accuracy.imgsz} on {accuracy.images} images of {accuracy.data}"
    )
