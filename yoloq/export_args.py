"""The options ``yoloq export`` and ``yoloq models export`` share (no torch here: the
CLI parses them before it loads anything)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXPORT_FORMATS = ("onnx", "torchscript", "engine", "openvino")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--imgsz", type=int, help="input size (default: the training size)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda:N for an engine")
    parser.add_argument(
        "--int8", action="store_true", help="quantize to INT8 with NNCF (--format openvino)"
    )
    parser.add_argument(
        "--calibration",
        metavar="DIR|s3://BUCKET/PREFIX/",
        help="images to calibrate INT8 on: your own, no labels needed",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=300,
        metavar="N",
        help="calibrate on at most N of them (default 300)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="YAML",
        help="a labelled set (Ultralytics dataset YAML): score the export and the .pt on "
        "its val split, and refuse an export past --max-loss",
    )
    parser.add_argument(
        "--max-loss",
        type=float,
        default=1.5,
        metavar="POINTS",
        help="mAP@0.5 points the export may lose against the .pt (default 1.5)",
    )
    parser.add_argument("--accept-loss", action="store_true", help="keep an export past --max-loss")
