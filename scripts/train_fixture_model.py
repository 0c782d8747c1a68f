"""Train the small shapes detector the tests and the demo use, fully offline, on the CPU.

    python scripts/train_fixture_model.py            # ~25 minutes on 2 cores

Writes ``tests/fixtures/shapes_yolov8n.pt`` (weights only, no optimizer state) and
``tests/fixtures/shapes_yolov8n.json`` (seeds, epochs, image size, class names, sha256,
training time, held-out mAP). Tests never retrain: this exists so anyone can reproduce
the committed file. Nothing is downloaded: the model is built from Ultralytics' packaged
``yolov8n.yaml`` with random weights, and plots, AMP checks and hub calls are off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_shapes_dataset import CLASS_NAMES, write_dataset_yaml, write_split  # noqa: E402

TRAIN_SEED, VAL_SEED = 0, 1
TRAIN_COUNT, VAL_COUNT = 600, 120
IMGSZ = 256
"""Small enough for ~38 epochs in 27 minutes on 2 cores; objects stay >= ~19 px."""


EVAL_SIZES = (IMGSZ, 320, 640)


def evaluate_and_write(
    weights: Path, data: Path, out: Path, train_s: float, epochs: int
) -> dict[str, object]:
    """Held-out mAP at the training size and the sizes it may be served at; the file and
    its metadata JSON into ``out``."""
    import torch
    import ultralytics
    from ultralytics.models import YOLO

    held_out = {}
    for size in EVAL_SIZES:
        metrics = YOLO(str(weights)).val(
            data=str(data), imgsz=size, batch=16, device="cpu", plots=False
        )
        held_out[f"imgsz_{size}"] = {
            "map50": round(float(metrics.box.map50), 4),
            "map50_95": round(float(metrics.box.map), 4),
        }
    out.mkdir(parents=True, exist_ok=True)
    target = out / "shapes_yolov8n.pt"
    if weights.resolve() != target.resolve():
        shutil.copyfile(weights, target)
    meta: dict[str, object] = {
        "train_seed": TRAIN_SEED,
        "val_seed": VAL_SEED,
        "train_images": TRAIN_COUNT,
        "val_images": VAL_COUNT,
        "epochs": epochs,
        "imgsz": IMGSZ,
        "class_names": list(CLASS_NAMES),
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "bytes": target.stat().st_size,
        "train_seconds": round(train_s, 1),
        "cpu_threads": os.cpu_count(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "held_out": held_out,
        "command": "python scripts/train_fixture_model.py",
    }
    (out / "shapes_yolov8n.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def make_dataset(work: Path) -> Path:
    dataset = work / "dataset"
    for split, seed, count in (("train", TRAIN_SEED, TRAIN_COUNT), ("val", VAL_SEED, VAL_COUNT)):
        write_split(
            dataset / f"images/{split}", dataset / f"labels/{split}", seed, count, 90, split
        )
    return write_dataset_yaml(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--hours", type=float, default=0.45, help="training time budget")
    parser.add_argument("--epochs", type=int, default=60, help="upper bound; time decides")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--evaluate",
        type=Path,
        metavar="WEIGHTS",
        help="skip training: evaluate these weights and write them and their JSON "
        "(give --train-seconds and --epochs from their training run)",
    )
    parser.add_argument("--train-seconds", type=float, default=0.0)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="yoloq-train-"))
    os.environ.update(
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="false",
        YOLO_CONFIG_DIR=str(work / "ultralytics"),
        OMP_NUM_THREADS=str(os.cpu_count() or 1),
    )
    data = make_dataset(work)
    if args.evaluate:
        meta = evaluate_and_write(args.evaluate, data, args.out, args.train_seconds, args.epochs)
        print(json.dumps(meta, indent=2))
        return

    from ultralytics.models import YOLO

    started = time.monotonic()
    model = YOLO("yolov8n.yaml", task="detect")
    model.train(
        data=str(data),
        epochs=args.epochs,
        time=args.hours,  # Ultralytics fits the epochs (and the LR schedule) to this budget
        imgsz=IMGSZ,
        batch=16,
        workers=2,
        device="cpu",
        pretrained=False,
        amp=False,
        plots=False,
        val=False,  # validate once at the end: per-epoch validation costs ~10% of the budget
        close_mosaic=5,
        seed=0,
        deterministic=True,
        project=str(work / "runs"),
        name="shapes",
        exist_ok=True,
    )
    train_s = time.monotonic() - started
    trainer = model.trainer
    assert trainer is not None
    # last.pt is stripped of optimizer state when training ends.
    meta = evaluate_and_write(Path(trainer.last), data, args.out, train_s, int(trainer.epoch) + 1)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
