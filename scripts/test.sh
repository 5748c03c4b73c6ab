#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up .venv with the dev requirements,
# then runs ruff, mypy, the import-layer contracts and pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k tokens).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv requirements-dev requirements.txt requirements-dev.txt

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

.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
.venv/bin/lint-imports --no-cache   # the layers of shared/ (pyproject.toml [tool.importlinter])
exec .venv/bin/python -m pytest "$@"
