"""``bench/throughput.py --smoke``: every row of the benchmark runs through the real stack
(API, Redis, S3, a worker per backend), so the benchmark cannot rot unnoticed.

Only the shape of the report is checked, never a timing: performance lives in bench/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATIOS = ("c_best/a", "c_best/best", "c_pt/a", "d/best", "best_openvino/best_pt")


def test_smoke_run_prints_ratios_and_writes_its_report(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    # On 4 tiny images the overhead may come out below zero: smoke numbers mean nothing.
    printed = dict(re.findall(r"^(\S+)=(-?[0-9.]+)", run.stdout, re.MULTILINE))
    assert set(RATIOS) | {"overhead_p50_ms", "overhead_cpu_ms_per_image"} <= set(printed), (
        run.stdout[-3000:]
    )
    # Every backend ran in process, the OpenVINO ones scored against the .pt.
    assert re.search(r"mAP@0\.5 at \d+ on 8 held-out images: pt 0\.\d+, openvino 0\.", run.stdout)
    assert "one-image job, p50 ms by stage: submit" in run.stdout

    [path] = tmp_path.glob("throughput-*.json")
    report = json.loads(path.read_text())
    assert report["smoke"] is True and report["images"] == 4
    assert set(report["rows"]) == {"a", "best", "c_pt", "c_best", "d", "overhead"}
    for name in ("a", "best", "c_pt", "c_best", "d"):
        assert report["rows"][name]["images_per_s"] > 0
    assert set(report["ratios"]) == set(RATIOS)
    assert all(value > 0 for value in report["ratios"].values())
    assert set(report["targets_met"]) == {
        "c_best/a",
        "c_best/best",
        "d/best",
        "best_openvino/best_pt",
        "overhead_p50_ms",
        "overhead_cpu_ms_per_image",
    }
    formats = {c["format"] for c in report["candidates"].values()}
    assert formats == {"pt", "onnx", "openvino", "openvino-int8"}
    for name in ("c_pt", "c_best", "d"):
        cpu = report["rows"][name]["overhead_cpu_ms_per_image"]
        assert set(cpu) == {"total", "api", "redis", "s3", "worker"}
    stages = report["rows"]["overhead"]["stages_p50_ms"]
    assert list(stages) == [
        "submit",
        "to_worker",
        "download",
        "decode",
        "batch_wait",
        "inference",
        "record",
        "seen",
    ]
    assert stages["inference"] > 0 and stages["download"] > 0


def test_tasks_smoke_run_compares_every_task(tmp_path: Path) -> None:
    """``bench/tasks.py --smoke``: each task's model in-process and through a worker."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tasks.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [path] = tmp_path.glob("tasks-*.json")
    report = json.loads(path.read_text())
    tasks = {"detect", "segment", "pose", "obb", "classify"}
    assert report["smoke"] is True and set(report["ratios"]) == tasks
    [rows] = report["runs"]
    for task in tasks:
        assert rows[task]["pipeline_images_per_s"] > 0 and rows[task]["ratio"] > 0
        assert re.search(rf"^{task}\s+[0-9.]+", run.stdout, re.MULTILINE), run.stdout


def test_detect_smoke_run_compares_the_endpoint_with_flask(tmp_path: Path) -> None:
    """``bench/detect.py --smoke``: lone and concurrent requests to both servers."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "detect.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [path] = tmp_path.glob("detect-*.json")
    report = json.loads(path.read_text())
    assert report["smoke"] is True
    [rows] = report["runs"]
    assert rows["in_process_p50_ms"] > 0
    for clients in ("c8", "c32"):
        assert rows[clients]["yoloq"] > 0 and rows[clients]["flask"] > 0
    for row in ("overhead_detect_p50_ms", "c8/flask", "c32/flask"):
        assert re.search(rf"^{re.escape(row)}\s+-?[0-9.]+", run.stdout, re.MULTILINE), run.stdout
