"""Property-based requests against the live API, from its own OpenAPI schema.

At least 500 generated cases: no 5xx, and every response matches the schema it declares.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY, ROOT

MIN_CASES = 500


def test_generated_requests_get_no_5xx_and_match_the_schema(
    api_url: str, worker: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{api_url}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", f"Authorization: Bearer {API_KEY}",
            "--max-examples", "75",
            "--seed", "20261122",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "schemathesis.txt").write_text(out)
    assert result.returncode == 0, out[-6000:]
    match = re.search(r"(\d+) generated", out)
    assert match, out[-3000:]
    generated = int(match.group(1))
    print(f"schemathesis: {generated} generated cases")
    assert generated >= MIN_CASES, out[-3000:]
