"""Train the small segment / pose / OBB / classify shapes models, fully offline, on the CPU.

    python scripts/train_task_fixtures.py --task segment     # ~10 minutes on 2 cores
    python scripts/train_task_fixtures.py --task pose
    python scripts/train_task_fixtures.py --task obb
    python scripts/train_task_fixtures.py --task classify    # ~3 minutes

Each run generates its dataset with ``scripts/make_task_datasets.py`` (the detector's images:
train seed 0, held-out val seed 1), builds the model from Ultralytics' packaged
``yolov8n-<task>.yaml``, initialises it from the detector fixture
``tests/fixtures/shapes_yolov8n.pt`` (every tensor whose name and shape match: the backbone and
neck, for segment / OBB also the box and class branches of the head; for classify the first
layers), trains within a time budget and validates once at the end. It writes
``tests/fixtures/shapes_yolov8n-{seg,pose,obb,cls}.pt`` (Ultralytics' stripped last.pt: weights
only, no optimizer state) and a JSON beside it with the fields of ``shapes_yolov8n.json`` plus
the task, the held-out metrics of that task and the command. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.make_task_datasets import (  # noqa: E402
    FLIP_IDX,
    KPT_NAMES,
    KPT_SHAPE,
    TASKS,
    build_task_dataset,
)
from scripts.train_fixture_model import EVAL_SIZES, IMGSZ, TRAIN_SEED, VAL_SEED  # noqa: E402

DETECTOR = ROOT / "tests" / "fixtures" / "shapes_yolov8n.pt"


@dataclass(frozen=True)
class TaskSpec:
    """How one task is trained and evaluated."""

    suffix: str
    """File name suffix of the fixture: ``shapes_yolov8n-<suffix>.pt``."""
    imgsz: int
    hours: float
    eval_sizes: tuple[int, ...]
    train_images: int = 600
    val_images: int = 120
    batch: int = 16

    @property
    def model_yaml(self) -> str:
        return f"yolov8n-{self.suffix}.yaml"


SPECS: dict[str, TaskSpec] = {
    "segment": TaskSpec("seg", IMGSZ, 0.15, EVAL_SIZES),
    "pose": TaskSpec("pose", IMGSZ, 0.15, EVAL_SIZES),
    "obb": TaskSpec("obb", IMGSZ, 0.15, EVAL_SIZES),
    # ~3-4 crops per image: ~2000 train crops, ~450 held-out.
    "classify": TaskSpec("cls", 64, 0.05, (64,), batch=32),
}

TASK_TRAIN_ARGS: dict[str, dict[str, Any]] = {
    # Every instance keeps its own full mask (the labels are whole shapes, which may overlap a
    # little) instead of one merged index mask.
    "segment": {"overlap_mask": False},
    "pose": {},
    "obb": {},
    # Gentler crops than the defaults (area 0.5..1, 40% random erasing) so the shape stays whole.
    "classify": {"scale": 0.3, "erasing": 0.0},
}


def offline_env(work: Path) -> None:
    """Keep Ultralytics off the network and its settings out of the home directory."""
    os.environ.update(
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="false",
        YOLO_CONFIG_DIR=str(work / "ultralytics"),
        OMP_NUM_THREADS=str(os.cpu_count() or 1),
    )


def fixture_path(out: Path, task: str) -> Path:
    return out / f"shapes_yolov8n-{SPECS[task].suffix}.pt"


def task_metrics(task: str, metrics: Any) -> dict[str, float]:
    """The held-out numbers of one ``YOLO.val`` result, per task."""

    def r(value: Any) -> float:
        return round(float(value), 4)

    if task == "classify":
        return {"top1": r(metrics.top1), "top5": r(metrics.top5)}
    if task == "obb":
        return {"map50": r(metrics.box.map50), "map50_95": r(metrics.box.map)}
    out = {"box_map50": r(metrics.box.map50), "box_map50_95": r(metrics.box.map)}
    part = metrics.seg if task == "segment" else metrics.pose
    name = "mask" if task == "segment" else "pose"
    out |= {f"{name}_map50": r(part.map50), f"{name}_map50_95": r(part.map)}
    return out


def transferred_from_detector(model: Any) -> dict[str, int]:
    """Count the tensors of ``model`` equal to the detector's (same name and shape)."""
    import torch

    detector = torch.load(DETECTOR, map_location="cpu", weights_only=False)
    src = (detector.get("ema") or detector["model"]).float().state_dict()
    dst = model.state_dict()
    same = sum(
        1
        for k, v in dst.items()
        if k in src and v.shape == src[k].shape and torch.equal(v.float().cpu(), src[k])
    )
    backbone = [k for k in src if int(k.split(".")[1]) <= 9]  # yolov8 backbone: layers 0..9
    backbone_same = sum(
        1
        for k in backbone
        if k in dst and dst[k].shape == src[k].shape and torch.equal(dst[k].float().cpu(), src[k])
    )
    return {
        "tensors": len(dst),
        "from_detector": same,
        "detector_backbone_tensors": len(backbone),
        "backbone_from_detector": backbone_same,
    }


def evaluate_and_write(
    task: str,
    weights: Path,
    data: Path,
    out: Path,
    train_s: float,
    epochs: int,
    counts: dict[str, int],
    images: tuple[int, int],
    extra: dict[str, object],
) -> dict[str, object]:
    """Held-out metrics of ``weights`` at the sizes it may be served at; the file (as
    ``shapes_yolov8n-<suffix>.pt``) and its metadata JSON into ``out``."""
    import torch
    import ultralytics
    from ultralytics.models import YOLO

    spec = SPECS[task]
    model = YOLO(str(weights), task=task)
    names = [model.names[i] for i in sorted(model.names)]  # classify: ImageFolder's (sorted) order
    held_out = {}
    for size in spec.eval_sizes:
        metrics = YOLO(str(weights), task=task).val(
            data=str(data), imgsz=size, batch=spec.batch, device="cpu", plots=False
        )
        held_out[f"imgsz_{size}"] = task_metrics(task, metrics)
    out.mkdir(parents=True, exist_ok=True)
    target = fixture_path(out, task)
    if weights.resolve() != target.resolve():
        shutil.copyfile(weights, target)
    meta: dict[str, object] = {
        "task": task,
        "train_seed": TRAIN_SEED,
        "val_seed": VAL_SEED,
        "train_images": images[0],
        "val_images": images[1],
        "epochs": epochs,
        "imgsz": spec.imgsz,
        "class_names": names,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "bytes": target.stat().st_size,
        "train_seconds": round(train_s, 1),
        "cpu_threads": os.cpu_count(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "held_out": held_out,
        "command": "python scripts/train_task_fixtures.py " + shlex.join(sys.argv[1:]),
        "model_yaml": spec.model_yaml,
        "initialised_from": str(DETECTOR.relative_to(ROOT)),
    }
    if task == "classify":
        meta |= {"train_crops": counts["train"], "val_crops": counts["val"]}
    if task == "pose":
        carried = getattr(model.model, "kpt_names", None)
        meta |= {
            "kpt_shape": list(KPT_SHAPE),
            "flip_idx": list(FLIP_IDX),
            "kpt_names": list(KPT_NAMES),
            # Whether the checkpoint itself carries them (PoseModel.kpt_names, from the YAML).
            "kpt_names_in_checkpoint": carried == {0: list(KPT_NAMES)},
        }
    meta |= extra
    target.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def train(
    task: str, data: Path, work: Path, hours: float, epochs: int
) -> tuple[Path, float, int, dict[str, int]]:
    """Train one model; returns (stripped last.pt, seconds, epochs run, transfer counts)."""
    from ultralytics.models import YOLO

    spec = SPECS[task]
    transfer: dict[str, int] = {}

    def record_transfer(trainer: Any) -> None:
        transfer.update(transferred_from_detector(trainer.model))

    started = time.monotonic()
    model = YOLO(spec.model_yaml, task=task)
    model.add_callback("on_pretrain_routine_end", record_transfer)
    model.train(
        data=str(data),
        epochs=epochs,
        time=hours,  # Ultralytics fits the epochs (and the LR schedule) to this budget
        imgsz=spec.imgsz,
        batch=spec.batch,
        workers=2,
        device="cpu",
        pretrained=str(DETECTOR),  # matching tensors (name and shape) are transferred
        amp=False,
        plots=False,
        val=False,  # validated once, after the last epoch
        warmup_epochs=1,  # starting from trained weights, the budget is a few epochs only
        close_mosaic=3,
        seed=0,
        deterministic=True,
        project=str(work / "runs"),
        name=task,
        exist_ok=True,
        **TASK_TRAIN_ARGS[task],
    )
    train_s = time.monotonic() - started
    trainer = model.trainer
    assert trainer is not None
    # last.pt is stripped of optimizer state when training ends.
    return Path(trainer.last), train_s, int(trainer.epoch) + 1, transfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument(
        "--hours", type=float, help="training time budget (default: 0.15, classify 0.05)"
    )
    parser.add_argument("--epochs", type=int, default=100, help="upper bound; time decides")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--evaluate",
        type=Path,
        metavar="WEIGHTS",
        help="skip training: evaluate these weights and write them and their JSON "
        "(give --train-seconds and --epochs from their training run)",
    )
    parser.add_argument("--train-seconds", type=float, default=0.0)
    parser.add_argument("--train-images", type=int, help="default: 600 (a quick trial: fewer)")
    parser.add_argument("--val-images", type=int, help="default: 120")
    args = parser.parse_args()

    task: str = args.task
    spec = SPECS[task]
    hours = args.hours if args.hours is not None else spec.hours
    work = args.work or Path(tempfile.mkdtemp(prefix=f"yoloq-train-{task}-"))
    offline_env(work)
    images = (args.train_images or spec.train_images, args.val_images or spec.val_images)
    data, counts = build_task_dataset(
        task, work / "dataset", (TRAIN_SEED, images[0]), (VAL_SEED, images[1])
    )
    print(f"dataset {data}: {counts}", flush=True)
    if args.evaluate:
        meta = evaluate_and_write(
            task, args.evaluate, data, args.out, args.train_seconds, args.epochs, counts, images, {}
        )
    else:
        weights, train_s, epochs, transfer = train(task, data, work, hours, args.epochs)
        extra: dict[str, object] = {"hours": hours, "transferred": transfer}
        meta = evaluate_and_write(
            task, weights, data, args.out, train_s, epochs, counts, images, extra
        )
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
