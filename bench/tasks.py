"""Every task's pipeline throughput against in-process Ultralytics, side by side in one run.

    python bench/tasks.py              # or: make bench-tasks
    python bench/tasks.py --images 64 --runs 3
    python bench/tasks.py --smoke      # a few images per task: checks it runs

For each fixture model (detect, segment, pose, OBB, classify), on the same JPEGs:

  in-process  ``YOLO(weights).predict`` over the files, all cores, batch 1 and 4: the
              faster of the two (bench/inprocess.py)
  pipeline    one job of the same images: API -> Redis -> a worker serving that model ->
              S3 -> Redis, the worker's batch size measured at warm-up

and the ratio pipeline / in-process. ``--runs N`` repeats the whole comparison and prints
each ratio's median and spread. Machines here are noisy; compare ratios from one run, not
absolute numbers across runs. JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import Stack, in_process, make_images, one_job  # noqa: E402
from yoloq.local_services import ProcessGroup  # noqa: E402
from yoloq.schemas import InferenceParams  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
TASKS = {
    # The size each model sees best at (its JSON's held-out scores); classify at its own.
    "detect": (FIXTURES / "shapes_yolov8n.pt", 320),
    "segment": (FIXTURES / "shapes_yolov8n-seg.pt", 320),
    "pose": (FIXTURES / "shapes_yolov8n-pose.pt", 320),
    "obb": (FIXTURES / "shapes_yolov8n-obb.pt", 320),
    "classify": (FIXTURES / "shapes_yolov8n-cls.pt", 64),
}


def compare(work: Path, count: int, batches: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    paths = make_images(work / "images", count)
    cores = os.cpu_count() or 1
    rows: dict[str, dict[str, Any]] = {}
    with ProcessGroup(work / "logs") as group:
        stack = Stack(group, work, InferenceParams(), 320)
        refs = stack.upload(paths)
        for task, (weights, imgsz) in TASKS.items():
            lab = max(
                (
                    in_process(weights, work / "images", threads=cores, batch=b, imgsz=imgsz)
                    for b in batches
                ),
                key=lambda r: r["images_per_s"],
            )
            stack.env["YOLOQ_WARMUP_IMGSZ"] = str(imgsz)
            stack.params = InferenceParams(imgsz=imgsz)
            stack.start_worker(weights)
            served, _ = one_job(stack, refs)
            rows[task] = {
                "in_process_images_per_s": lab["images_per_s"],
                "in_process_batch": lab.get("batch"),
                "pipeline_images_per_s": served,
                "worker_max_batch": stack.max_batch(),
                "imgsz": imgsz,
                "ratio": served / lab["images_per_s"],
            }
            print(
                f"  {task:<9} in-process {lab['images_per_s']:6.1f}  pipeline {served:6.1f} "
                f"images/s  ratio {served / lab['images_per_s']:.2f}",
                flush=True,
            )
        stack.client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--smoke", action="store_true", help="4 images, batch 1, one run")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.runs = 4, 1
    batches = (1,) if args.smoke else (1, 4)
    print(f"{args.images} images 640x480, {os.cpu_count()} cores, {args.runs} run(s)", flush=True)
    runs = []
    for run in range(args.runs):
        print(f"run {run + 1}:", flush=True)
        with tempfile.TemporaryDirectory(prefix="yoloq-bench-tasks-") as tmp:
            runs.append(compare(Path(tmp), args.images, batches))
    print(f"\n{'task':<10}{'ratio median':>14}{'spread':>16}   pipeline / in-process")
    summary = {}
    for task in TASKS:
        ratios = [run[task]["ratio"] for run in runs]
        summary[task] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
        print(
            f"{task:<10}{summary[task]['median']:>14.2f}"
            f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>16}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tasks-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    report = {"images": args.images, "smoke": args.smoke, "runs": runs, "ratios": summary}
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
