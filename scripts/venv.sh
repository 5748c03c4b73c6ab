# Sourced by start.sh and test.sh: create .venv if needed and (re)install the given requirement
# files only when their contents change.
# Usage: ensure_venv <stamp name> <requirements file>...

# sha256sum is GNU coreutils; macOS ships shasum instead.
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi | cut -d' ' -f1; }

ensure_venv() {
  local stamp=".venv/.$1.sha256" want
  shift
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $("${PYTHON:-python3}" --version)"
    "${PYTHON:-python3}" -m venv .venv
  fi
  want=$(cat "$@" | sha256)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    local requirement
    for requirement in "$@"; do
      .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirement"
    done
    echo "$want" > "$stamp"
  fi
}
