"""Start tests/worker/host.py (the real Functions Python worker, Python 3.13) as a subprocess, from pytest.

Imported by tests/test_worker.py, which runs on whatever Python the suite runs on (3.11 or 3.13); the host always
runs under the worker venv that scripts/test.sh makes with Python 3.13: requirements.txt (exactly what Azure
installs) plus tests/worker/requirements.txt (the worker), nothing from the dev requirements.
Every wait here has a timeout; the host also stops by itself when its stdin closes.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER_VENV = ROOT / ".tools" / "worker" / "venv"
WORKER_PYTHON = WORKER_VENV / "bin" / "python"
PROTOS = ROOT / ".tools" / "worker" / "protos"
HOST = HERE / "host.py"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 60

_unavailable: list[str | None] = []


def unavailable() -> str | None:
    """Why the worker host cannot run here, or None (checked once per session)."""
    if not _unavailable:
        _unavailable.append(_probe())
    return _unavailable[0]


def _probe() -> str | None:
    setup = "scripts/test.sh sets it up when it finds Python 3.13 ($PYTHON313, pyenv, or python3.13 on PATH)"
    if not WORKER_PYTHON.exists():
        return f"the Functions worker venv {WORKER_VENV.relative_to(ROOT)} is missing: {setup}"
    if not (PROTOS / "functions_rpc" / "FunctionRpc_pb2.py").is_file():
        return f"the worker's protobuf modules are not in {PROTOS.relative_to(ROOT)}: {setup}"
    probe = (
        "import sys, azure_functions_runtime, azure.functions, google.protobuf;"
        "sys.exit(0 if sys.version_info[:2] >= (3, 13) else 3)"
    )
    try:
        run = subprocess.run([str(WORKER_PYTHON), "-c", probe], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_SECONDS, env=_clean_env({}))
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{WORKER_PYTHON.relative_to(ROOT)} does not run: {exc}"
    if run.returncode == 3:
        return f"{WORKER_VENV.relative_to(ROOT)} is not a Python 3.13+ venv: delete it and run scripts/test.sh"
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["?"])[-1]
        return f"the worker packages do not import in {WORKER_VENV.relative_to(ROOT)} ({last}): run scripts/test.sh"
    return None


def _clean_env(settings: dict[str, str]) -> dict[str, str]:
    # Nothing of the pytest interpreter's Python setup may leak into the worker's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    env["FUNCTIONS_WORKER_RUNTIME"] = "python"
    return env


class WorkerHost:
    """``with WorkerHost(env) as host``: ``host.event`` is the host's first line (``ready`` or ``failed``),
    ``host.url`` the loopback URL when ready, ``host.logs()`` what the host and the app logged so far."""

    def __init__(self, env: dict[str, str], log_path: Path, *, unset: tuple[str, ...] = ()) -> None:
        self._env = {k: v for k, v in _clean_env(env).items() if k not in unset}
        self._log_path = log_path
        self._stderr: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.event: dict[str, Any] = {}
        self.returncode: int | None = None

    @property
    def ready(self) -> bool:
        return self.event.get("event") == "ready"

    @property
    def url(self) -> str:
        assert self.ready, f"the worker host is not serving: {self.event}\n{self.logs()[-3000:]}"
        return str(self.event["url"])

    def logs(self) -> str:
        if self._stderr is None:
            return ""
        if not self._stderr.closed:
            self._stderr.flush()
        return self._log_path.read_text(errors="replace")

    def __enter__(self) -> WorkerHost:
        self._stderr = self._log_path.open("wb")
        self._process = subprocess.Popen(
            [str(WORKER_PYTHON), str(HOST), "--app-dir", str(ROOT), "--protos", str(PROTOS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=self._env, cwd=ROOT,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self._process.stdout
        assert stdout is not None

        def pump() -> None:
            try:
                for line in stdout:
                    lines.put(line)
            except (OSError, ValueError):  # closed by __exit__
                pass
            lines.put(b"")

        threading.Thread(target=pump, name="worker-host-stdout", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.event:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.__exit__()
                raise TimeoutError(
                    f"the worker host did not start in {START_TIMEOUT_SECONDS} s:\n{self.logs()[-3000:]}"
                ) from None
            if not line:
                self.returncode = self._wait()
                self.event = {"event": "exited", "returncode": self.returncode}
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue  # something the app printed to stdout
            if isinstance(event, dict) and "event" in event:
                self.event = event
        if not self.ready and self.returncode is None:
            self.returncode = self._wait()
        return self

    def _wait(self) -> int:
        """The host's exit status once it has exited by itself; killed if it does not within the timeout."""
        assert self._process is not None
        try:
            return self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            if process.stdin is not None:
                process.stdin.close()  # the host shuts down when its stdin closes
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if process is not None:
            self.returncode = process.returncode
            for stream in (process.stdin, process.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
