#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up .venv with the dev requirements,
# then runs ruff, mypy, the import-layer contracts and pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k tokens).
# PYTHON and VENV choose the interpreter and the venv (default python3, .venv); .ci/run also runs
# PYTHON=<python3.13> VENV=.tools/venv-py3.13 scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
VENV="${VENV:-.venv}"
ensure_venv_at "$VENV" "${PYTHON:-python3}" requirements-dev requirements.txt requirements-dev.txt

# --- conformance tools: Node 22 and the pinned MCP conformance suites, into .tools/node ---
# Installed from tests/conformance/npm/package-lock.json whenever it changes. Without npm the conformance
# tests skip with the reason (and fail when CI is set).
node_stamp=.tools/node/.package-lock.sha256
node_want=$(sha256 tests/conformance/npm/package-lock.json)
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p .tools/node
    cp tests/conformance/npm/package.json tests/conformance/npm/package-lock.json .tools/node/
    if (cd .tools/node && npm ci --no-audit --no-fund --loglevel=error); then
      echo "$node_want" > "$node_stamp"
    else
      echo "npm ci failed in .tools/node: the conformance tests cannot run" >&2
    fi
  else
    echo "npm not found: the conformance tests cannot run" >&2
  fi
fi
# --- end conformance tools ---

# --- the Functions Python worker (tests/test_worker.py): Python 3.13, into .tools/worker ---
# The app as Azure runs it on 3.13+: a venv with requirements.txt and the worker (tests/worker/requirements.txt)
# only, and the host<->worker protobuf modules (tests/worker/protos.txt). Without Python 3.13 the worker tests
# skip with the reason (and fail when CI is set).
if worker_python=$(find_python313); then
  if ensure_venv_at .tools/worker/venv "$worker_python" worker requirements.txt tests/worker/requirements.txt; then
    .tools/worker/venv/bin/python tests/worker/fetch_protos.py \
      || echo "fetching the worker's protobuf modules failed: the worker tests cannot run" >&2
  else
    echo "installing the Functions worker into .tools/worker/venv failed: the worker tests cannot run" >&2
  fi
else
  echo "Python 3.13 not found (PYTHON313, pyenv, python3.13 on PATH): the Functions worker tests cannot run" >&2
fi
# --- end Functions worker ---

"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m mypy
"$VENV/bin/lint-imports" --no-cache   # the layers of shared/ (pyproject.toml [tool.importlinter])
exec "$VENV/bin/python" -m pytest "$@"
