"""The API must start where torch, Ultralytics and OpenCV are not installed."""

import subprocess
import sys

BLOCKER = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    BLOCKED = {"torch", "torchvision", "ultralytics", "cv2", "workers"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import api.main
app = api.main.create_app()
paths = set(app.openapi()["paths"])
assert "/v1/jobs" in paths and "/v1/jobs/{job_id}/results" in paths, paths
leaked = {m.split(".")[0] for m in sys.modules} & Block.BLOCKED
assert not leaked, leaked
print("ok")
"""


def test_api_imports_and_builds_without_torch_ultralytics_cv2_or_workers() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
