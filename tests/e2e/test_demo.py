"""``yoloq demo`` on a machine with nothing configured: it starts what it needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from yoloq.local_services import free_port


def test_demo_runs_a_job_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLOQ_")}
    result = subprocess.run(
        [sys.executable, "-m", "yoloq", "demo", "--exit", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"
    assert "started Redis at redis://127.0.0.1:" in out
    assert "started an S3-compatible server" in out
    assert re.search(r"job [0-9a-f]{32} succeeded", out)
    # Real detections: a class name, a confidence and a box.
    assert re.search(r"(circle|square|triangle|star)\s+0\.\d\d\s+\[\d+, \d+, \d+, \d+\]", out), out
    assert "API docs:    http://127.0.0.1:" in out
    # Everything it started has stopped: its Redis port no longer answers.
    redis_port = int(re.search(r"started Redis at redis://127.0.0.1:(\d+)", out).group(1))  # type: ignore[union-attr]
    probe = subprocess.run(
        [
            "python3",
            "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {redis_port}), 1)",
        ],
        capture_output=True,
    )
    assert probe.returncode != 0
