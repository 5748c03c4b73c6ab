#!/usr/bin/env bash
# Start the function app locally: sets up .venv, creates local.settings.json from the
# sample when it is missing, then runs `func start` (Azure Functions Core Tools v4).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv requirements requirements.txt

if [ ! -f local.settings.json ]; then
  cp local.settings.sample.json local.settings.json
  echo "Created local.settings.json from the sample: set ENTRA_TENANT_ID and ENTRA_CLIENT_ID"
  echo "(or run 'azd provision', whose hook writes them), then run this script again."
  exit 1
fi

if ! command -v func >/dev/null 2>&1; then
  cat >&2 <<'MSG'
Azure Functions Core Tools (func) is not installed. Install v4, then run this again:
  npm install -g azure-functions-core-tools@4 --unsafe-perm true
  or see https://learn.microsoft.com/azure/azure-functions/functions-run-local#install-the-azure-functions-core-tools
MSG
  exit 127
fi

# shellcheck disable=SC1091
source .venv/bin/activate
exec func start "$@"
