"""In-process Ultralytics throughput: the reference the pipeline is measured against.

Run as a subprocess by ``bench/throughput.py`` so each configuration starts clean (torch
thread settings stick to a process). Prints one JSON object.

    python bench/inprocess.py --weights W.pt --images DIR [--threads N --batch B]

Without ``--threads`` it is what a user writes first: ``for f in files: model(f)`` with
Ultralytics' defaults. Decoding is always included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--threads", type=int, help="torch threads (default: Ultralytics')")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--imgsz", type=int, help="default: the model's training size")
    parser.add_argument("--latency", type=int, default=0, help="also time N single images")
    parser.add_argument(
        "--worker-compile",
        action="store_true",
        help="an OpenVINO export compiled and run as a worker runs it (workers/openvino.py)",
    )
    args = parser.parse_args()

    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import cv2
    import torch
    from ultralytics.models import YOLO

    sized = {"imgsz": args.imgsz} if args.imgsz else {}
    files = sorted(args.images.glob("*.jpg"))
    # An OpenVINO export runs with Ultralytics' own settings for it (LATENCY hint, all
    # cores) unless --worker-compile; --threads sets torch's, which only the .pt and its
    # NMS use.
    model = YOLO(str(args.weights), task="detect")
    model(str(files[0]), verbose=False, **sized)  # load and warm
    if args.worker_compile:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from workers.openvino import compile_for_worker

        assert model.predictor is not None
        compile_for_worker(model.predictor.model, args.weights, "auto")
    if args.threads:
        torch.set_num_threads(args.threads)  # Ultralytics resets it on its first call
    for batch_size in range(1, args.batch + 1):
        model([cv2.imread(str(f)) for f in files[:batch_size]], verbose=False, **sized)

    started, cpu_started = time.perf_counter(), time.process_time()
    if args.threads is None:
        for f in files:
            model(str(f), verbose=False, **sized)
    else:
        for i in range(0, len(files), args.batch):
            batch = [cv2.imread(str(f)) for f in files[i : i + args.batch]]
            model(batch, verbose=False, **sized)
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started

    latencies = []
    for f in files[: args.latency]:
        one = time.perf_counter()
        model([cv2.imread(str(f))], verbose=False, **sized)
        latencies.append(time.perf_counter() - one)
    json.dump(
        {
            "images": len(files),
            "seconds": seconds,
            "images_per_s": len(files) / seconds,
            "cpu_s": cpu_s,
            "torch_threads": torch.get_num_threads(),
            "latencies_s": latencies,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
