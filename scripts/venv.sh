# Sourced by start.sh and test.sh: create a virtual environment if needed and (re)install the given
# requirement files only when their contents change.
# Usage: ensure_venv <stamp name> <requirements file>...        (.venv, created with $PYTHON, default python3)
#        ensure_venv_at <venv dir> <python> <stamp name> <requirements file>...

# sha256sum is GNU coreutils; macOS ships shasum instead.
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi | cut -d' ' -f1; }

ensure_venv() {
  ensure_venv_at .venv "${PYTHON:-python3}" "$@"
}

ensure_venv_at() {
  local venv=$1 python=$2 stamp="$1/.$3.sha256" want
  shift 3
  # A venv whose base interpreter is gone (a removed pyenv version, say) is made again.
  # Every step checks its status itself: under `if ensure_venv_at ...` the caller's set -e does not apply.
  if [ -e "$venv" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    echo "Recreating $venv: its Python no longer runs"
    rm -rf "$venv" || return 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "Creating $venv with $("$python" --version)"
    "$python" -m venv "$venv" || return 1
  fi
  want=$(cat "$@" | sha256) || return 1
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip || return 1
    local requirement
    for requirement in "$@"; do
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirement" || return 1
    done
    echo "$want" > "$stamp"
  fi
}

# Prints the path of a Python 3.13 interpreter, or nothing (status 1). Looks at $PYTHON313, then the
# newest pyenv 3.13.x (`pyenv root`, else $PYENV_ROOT or ~/.pyenv), then python3.13 and python3 on PATH;
# each candidate must actually run as 3.13 (a pyenv shim for a version that is not selected does not).
find_python313() {
  local candidate root
  local candidates=()
  [ -n "${PYTHON313:-}" ] && candidates+=("$PYTHON313")
  root=$(pyenv root 2>/dev/null) || root="${PYENV_ROOT:-$HOME/.pyenv}"
  while IFS= read -r candidate; do
    candidates+=("$candidate")
  done < <(ls -d "$root"/versions/3.13.*/bin/python3 2>/dev/null | grep -E '/3\.13\.[0-9]+/bin/' | sort -rV)
  candidates+=(python3.13 python3)
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}
