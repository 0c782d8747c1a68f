"""``yoloq export``: the .pt weights in another format Ultralytics (and so a worker) loads."""

from __future__ import annotations

import shutil
from pathlib import Path

from workers.model import configure_offline, trained_imgsz

FORMATS = ("onnx", "torchscript", "engine")


def export_weights(
    weights: Path,
    fmt: str,
    out: Path | None,
    imgsz: int | None,
    cache_dir: Path,
    device: str = "cpu",
) -> Path:
    """Export and return the new file's path.

    Shapes are dynamic (batch, height and width), so the exported model takes the same
    batches of rectangular letterboxed images as the .pt does.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not weights.is_file() or weights.suffix != ".pt":
        raise ValueError(f"{weights} is not a .pt weights file")
    if fmt == "engine" and not device.startswith("cuda"):
        raise ValueError("a TensorRT engine is built on the GPU that will run it: --device cuda:N")
    configure_offline(cache_dir / "ultralytics")
    from ultralytics.models import YOLO

    model = YOLO(str(weights), task="detect")
    # The size it was trained at, unless told: recorded in the export's metadata, it is
    # what a worker then serves at by default.
    imgsz = imgsz or trained_imgsz(weights, model.overrides)
    # Ultralytics refuses an option a format does not take, even one set to its default.
    formats_options: dict[str, dict[str, object]] = {
        "onnx": {"simplify": True},
        "engine": {"quantize": "fp16"},
    }
    options = formats_options.get(fmt, {})
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
        shutil.move(exported, out)
        return out
    return exported
