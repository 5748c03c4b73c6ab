#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up .venv with the dev requirements,
# then runs ruff, mypy and pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k tokens).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
# sha256sum is GNU coreutils; macOS ships shasum instead.
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi | cut -d' ' -f1; }
# Reinstall only when the requirement files change.
stamp=.venv/.requirements-dev.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

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
exec .venv/bin/python -m pytest "$@"
