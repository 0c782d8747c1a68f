"""``yoloq export``: the .pt weights in another format Ultralytics (and so a worker)
loads, INT8 calibrated on the user's own images where asked."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from workers.export_accuracy import (
    DEFAULT_MAX_LOSS,
    ExportRefused,
    describe,
    enforce_budget,
    measure_accuracy,
    write_accuracy,
)
from workers.model import configure_offline, trained_imgsz
from yoloq import keys
from yoloq.catalog import ExportAccuracy
from yoloq.object_store import ObjectStore
from yoloq.settings import Settings

FORMATS = ("onnx", "torchscript", "engine", "openvino")

DEFAULT_CALIBRATION_IMAGES = 300
"""NNCF's own default subset size: enough images for stable activation ranges."""


def export_weights(
    weights: Path,
    fmt: str,
    out: Path | None,
    imgsz: int | None,
    cache_dir: Path,
    device: str = "cpu",
    *,
    int8: bool = False,
    calibration: Path | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
) -> Path:
    """Export and return the new file's (or OpenVINO directory's) path.

    Shapes are dynamic (batch, height and width), so the exported model takes the same
    batches of rectangular letterboxed images as the .pt does. ``int8`` (OpenVINO only)
    quantizes with NNCF, calibrated on up to ``calibration_images`` images of the folder
    ``calibration``: the images the model will see, no labels needed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not weights.is_file() or weights.suffix != ".pt":
        raise ValueError(f"{weights} is not a .pt weights file")
    if fmt == "engine" and not device.startswith("cuda"):
        raise ValueError("a TensorRT engine is built on the GPU that will run it: --device cuda:N")
    if int8 and fmt != "openvino":
        raise ValueError("INT8 exports are OpenVINO's: --format openvino --int8")
    if fmt == "openvino" and out is not None and not out.name.endswith("_openvino_model"):
        raise ValueError(f"an OpenVINO export is a directory named *_openvino_model, not {out}")
    if int8 and calibration is None:
        raise ValueError("an INT8 export is calibrated on your images: give --calibration")
    configure_offline(cache_dir / "ultralytics")
    from ultralytics.models import YOLO

    model = YOLO(str(weights))
    # The size it was trained at, unless told: recorded in the export's metadata, it is
    # what a worker then serves at by default.
    imgsz = imgsz or trained_imgsz(weights, model.overrides)
    # Ultralytics refuses an option a format does not take, even one set to its default.
    formats_options: dict[str, dict[str, object]] = {
        "onnx": {"simplify": True},
        "engine": {"quantize": "fp16"},
    }
    options = formats_options.get(fmt, {})
    with tempfile.TemporaryDirectory(prefix="yoloq-calibration-") as scratch:
        if int8:
            assert calibration is not None
            if model.task == "classify":
                raise ValueError("INT8 calibration here takes a detect, segment, pose or OBB model")
            data = calibration_dataset(
                calibration, Path(scratch), dict(model.names), calibration_images
            )
            options = {"quantize": 8, "data": str(data)}
        exported = Path(
            model.export(
                format=fmt,
                imgsz=imgsz,
                dynamic=True,
                device=device.removeprefix("cuda:") if device.startswith("cuda") else "cpu",
                verbose=False,
                **options,
            )
        )
    if out is not None and exported.resolve() != out.resolve():
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            shutil.rmtree(out)
        shutil.move(exported, out)
        return out
    return exported


def calibration_dataset(images: Path, scratch: Path, names: dict[int, str], most: int) -> Path:
    """A dataset YAML whose ``val`` split is up to ``most`` images of the folder (spread
    over it, not its first files), as Ultralytics' INT8 calibration reads one."""
    found = sorted(p for p in images.rglob("*") if p.suffix.lower() in keys.IMAGE_SUFFIXES)
    if not found:
        raise ValueError(f"no images in {images} to calibrate on")
    step = max(1, len(found) // most)
    chosen = found[::step][:most]
    folder = scratch / "images"
    folder.mkdir()
    for number, path in enumerate(chosen):
        (folder / f"{number:06d}{path.suffix.lower()}").symlink_to(path.resolve())
    data = scratch / "calibration.yaml"
    data.write_text(
        yaml.safe_dump({"path": str(scratch), "train": "images", "val": "images", "names": names})
    )
    return data


def fetch_calibration(spec: str, store: ObjectStore, into: Path, most: int) -> Path:
    """``--calibration``: a local folder as is, or up to ``most`` images under an
    ``s3://bucket/prefix/`` downloaded into ``into``."""
    if not spec.startswith("s3://"):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ValueError(f"calibration folder {spec!r} not found")
        return folder
    bucket, _, prefix = spec.removeprefix("s3://").partition("/")
    found = store.list_keys(bucket, prefix, keys.IMAGE_SUFFIXES, most=most)
    if not found:
        raise ValueError(f"no images under {spec} to calibrate on")
    into.mkdir(parents=True, exist_ok=True)
    for number, key in enumerate(found):
        store.client.download_file(bucket, key, str(into / f"{number:06d}{Path(key).suffix}"))
    return into


@dataclass(frozen=True)
class ExportOptions:
    """What ``yoloq export`` and ``yoloq models export`` are asked for."""

    format: str
    imgsz: int | None = None
    device: str = "cpu"
    int8: bool = False
    calibration: Path | None = None
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    labelled: Path | None = None
    """An Ultralytics dataset YAML whose ``val`` split scores the export and the .pt."""
    max_loss: float = DEFAULT_MAX_LOSS
    accept_loss: bool = False


def export_checked(
    weights: Path, out: Path | None, cache_dir: Path, options: ExportOptions
) -> tuple[Path, ExportAccuracy | None]:
    """Export, and when a labelled set is given score the export against the .pt: an
    export past its loss budget is deleted and ExportRefused raised (unless the loss is
    accepted); a kept one has its accuracy written beside it."""
    exported = export_weights(
        weights,
        options.format,
        out,
        options.imgsz,
        cache_dir,
        options.device,
        int8=options.int8,
        calibration=options.calibration,
        calibration_images=options.calibration_images,
    )
    if options.labelled is None:
        return exported, None
    from ultralytics.models import YOLO

    imgsz = options.imgsz or trained_imgsz(weights, YOLO(str(weights)).overrides)
    accuracy = measure_accuracy(weights, exported, options.labelled, imgsz, options.max_loss)
    try:
        accuracy = enforce_budget(accuracy, options.accept_loss)
    except ExportRefused:
        if exported.is_dir():
            shutil.rmtree(exported)
        else:
            exported.unlink()
        raise
    write_accuracy(exported, accuracy)
    return exported, accuracy


def export_from_arguments(
    args: argparse.Namespace, weights: Path, out: Path | None, settings: Settings
) -> tuple[Path, ExportAccuracy | None]:
    """Run the export the command line asks for (``yoloq.export_args``), printing what
    its accuracy check found; SystemExit with the reason when it cannot be made."""
    with tempfile.TemporaryDirectory(prefix="yoloq-calibration-") as scratch:
        try:
            calibration = None
            if args.calibration:
                calibration = fetch_calibration(
                    args.calibration,
                    ObjectStore.from_settings(settings),
                    Path(scratch),
                    args.calibration_images,
                )
            options = ExportOptions(
                format=args.format,
                imgsz=args.imgsz,
                device=args.device,
                int8=args.int8,
                calibration=calibration,
                calibration_images=args.calibration_images,
                labelled=args.data,
                max_loss=args.max_loss,
                accept_loss=args.accept_loss,
            )
            path, accuracy = export_checked(weights, out, settings.cache_dir, options)
        except ValueError as error:  # ExportRefused included
            raise SystemExit(f"yoloq export: {error}") from error
    if accuracy is not None:
        print(f"accuracy: {describe(accuracy)}", file=sys.stderr)
        if accuracy.accepted_loss:
            print(
                f"kept with {accuracy.loss_points:.2f} points lost (--accept-loss)", file=sys.stderr
            )
    elif options.int8:
        print("accuracy not measured: give --data to score the INT8 export", file=sys.stderr)
    return path, accuracy
