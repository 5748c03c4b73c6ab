#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up .venv with the dev requirements,
# then runs ruff and pytest. Extra arguments go to pytest (e.g. scripts/test.sh -k tokens).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the requirement files change.
stamp=.venv/.requirements-dev.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
