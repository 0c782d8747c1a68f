"""What an operator sees: Flower showing the worker online, and the API's docs, in a real
headless Chromium. Screenshots are kept in ``test-artifacts/``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from yoloq.local_services import ProcessGroup, free_port, port_open, wait_until

ARTIFACTS = ROOT / "test-artifacts"
FLOWER_AUTH = ("operator", "flower-test-password")
# Flags for a closed network: nothing phones home, nothing waits on a lookup.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=8000",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed here when missing (the test setup owns this)."""
    found = shutil.which("chromium")
    if found:
        return found
    install = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        install = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
        )
    found = shutil.which("chromium")
    assert found, f"could not install Debian's chromium:\n{install.stderr[-2000:]}"
    return found


@pytest.fixture(scope="module")
def flower_url(
    process_group: ProcessGroup, stack_env: dict[str, str], worker: str
) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "celery", "--broker", stack_env["YOLOQ_REDIS_URL"], "flower"]
    argv += [f"--port={port}", "--address=127.0.0.1"]
    env = {**stack_env, "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}
    process = process_group.start("flower", argv, env)
    process_group.wait_ready(process, lambda: port_open("127.0.0.1", port), timeout_s=60)
    yield f"http://127.0.0.1:{port}"
    process.stop()


def _browse(chromium: str, url: str, screenshot: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    profile = ["--user-data-dir=" + str(tmp_path / "chromium-profile")]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, f"--screenshot={screenshot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dom.stdout


def test_flower_needs_its_password(flower_url: str) -> None:
    assert httpx.get(f"{flower_url}/workers").status_code == 401
    assert httpx.get(f"{flower_url}/workers", auth=FLOWER_AUTH).status_code == 200


def test_flower_shows_the_worker_online(
    chromium: str, flower_url: str, worker: str, tmp_path: Path
) -> None:
    user, password = FLOWER_AUTH
    authed = flower_url.replace("http://", f"http://{user}:{password}@")

    # Flower learns of workers from their events and its own inspect calls, which a busy
    # worker answers late: poll until it knows this one, then look at the page.
    def flower_knows_the_worker() -> bool:
        api = httpx.get(f"{flower_url}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=30)
        return api.status_code == 200 and worker in api.json()

    wait_until(flower_knows_the_worker, 90, "Flower to see the worker", interval_s=1.0)
    shot = ARTIFACTS / "flower-workers.png"
    pages: list[str] = []

    def page_shows_it_online() -> bool:
        pages.append(_browse(chromium, f"{authed}/workers", shot, tmp_path))
        return worker in pages[-1] and re.search(r"Online", pages[-1]) is not None

    wait_until(page_shows_it_online, 120, "Flower's page to show the worker online", 2.0)
    assert (ARTIFACTS / "flower-workers.png").stat().st_size > 10_000


def test_api_docs_list_the_job_endpoints(chromium: str, api_url: str, tmp_path: Path) -> None:
    dom = _browse(chromium, f"{api_url}/docs", ARTIFACTS / "api-docs.png", tmp_path)
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results", "/v1/images"):
        assert path in dom, path
    assert (ARTIFACTS / "api-docs.png").stat().st_size > 10_000
