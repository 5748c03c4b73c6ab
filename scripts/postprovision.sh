#!/bin/sh
# azd postprovision hook (POSIX). Reads the provisioned values from `azd env get-values`,
# writes local.settings.json for `func start` against the same app registration (only if the
# file does not exist yet; with the sign-in bridge's client ID when the bridge is on), and prints
# the VS Code mcp.json entry for the deployed server.
# It never prints a secret and writes one only if the user put OBO_CLIENT_SECRET into the
# azd environment themselves (`azd env set OBO_CLIENT_SECRET ...`).
set -eu

SETTINGS_FILE="local.settings.json"

ENV_VALUES="$(azd env get-values)"

# Value of one line of `azd env get-values`; empty when absent. azd prints it with godotenv:
# KEY="value" with backslash escapes, but integer-like values bare (KEY=123).
env_value() {
  line="$(printf '%s\n' "$ENV_VALUES" | grep "^$1=" | head -n 1)" || true
  value="${line#*=}"
  case "$value" in
    \"*\")
      value="${value#\"}"
      value="${value%\"}"
      value="$(printf '%s' "$value" | sed 's/\\\(.\)/\1/g')"
      ;;
  esac
  printf '%s' "$value"
}

# Escapes a value for a JSON string literal (backslash and double quote; values are IDs and URLs).
json_escape() {
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

TENANT_ID="$(env_value ENTRA_TENANT_ID)"
CLIENT_ID="$(env_value ENTRA_CLIENT_ID)"
ALLOWED_CLIENT_IDS="$(env_value ENTRA_ALLOWED_CLIENT_IDS)"
APP_ID_URI="$(env_value ENTRA_APP_ID_URI)"
# Empty when the sign-in bridge is off (then ENTRA_ALLOWED_CLIENT_IDS does not contain it either).
BRIDGE_CLIENT_ID="$(env_value ENTRA_BRIDGE_CLIENT_ID)"
MCP_URL="$(env_value MCP_URL)"
CUSTOM_DOMAIN="$(env_value MCP_CUSTOM_DOMAIN)"
DEFAULT_HOST="$(env_value AZURE_FUNCTION_APP_HOSTNAME)"
VERIFICATION_ID="$(env_value AZURE_CUSTOM_DOMAIN_VERIFICATION_ID)"
CLIENT_SECRET="$(env_value OBO_CLIENT_SECRET)"

if [ -z "$TENANT_ID" ] || [ -z "$CLIENT_ID" ] || [ -z "$ALLOWED_CLIENT_IDS" ]; then
  echo "postprovision: ENTRA_TENANT_ID, ENTRA_CLIENT_ID or ENTRA_ALLOWED_CLIENT_IDS is missing from the azd environment; did provisioning finish?" >&2
  exit 1
fi

write_settings() {
  # The managed identity exists only in Azure, so local on-behalf-of uses a client secret,
  # and only when the user asked for one. AzureWebJobsStorage is not needed: HTTP triggers only.
  bridge_line=""
  if [ -n "$BRIDGE_CLIENT_ID" ]; then
    bridge_line=",
    \"ENTRA_BRIDGE_CLIENT_ID\": \"$(json_escape "$BRIDGE_CLIENT_ID")\""
  fi
  secret_line=""
  if [ -n "$CLIENT_SECRET" ]; then
    secret_line=",
    \"OBO_CLIENT_SECRET\": \"$(json_escape "$CLIENT_SECRET")\""
    # Owner-only from the moment the file is created, not only after the chmod below.
    umask 077
  fi
  cat > "$SETTINGS_FILE" <<JSON
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "ENTRA_TENANT_ID": "$(json_escape "$TENANT_ID")",
    "ENTRA_CLIENT_ID": "$(json_escape "$CLIENT_ID")",
    "ENTRA_ALLOWED_CLIENT_IDS": "$(json_escape "$ALLOWED_CLIENT_IDS")",
    "ENTRA_APP_ID_URI": "$(json_escape "$APP_ID_URI")"$bridge_line$secret_line
  }
}
JSON
  if [ -n "$CLIENT_SECRET" ]; then
    chmod 600 "$SETTINGS_FILE"
  fi
}

if [ -e "$SETTINGS_FILE" ]; then
  echo "$SETTINGS_FILE already exists; left unchanged. For local runs against this deployment it should contain:"
  echo "  ENTRA_TENANT_ID=$TENANT_ID"
  echo "  ENTRA_CLIENT_ID=$CLIENT_ID"
  echo "  ENTRA_ALLOWED_CLIENT_IDS=$ALLOWED_CLIENT_IDS"
  echo "  ENTRA_APP_ID_URI=$APP_ID_URI"
  if [ -n "$BRIDGE_CLIENT_ID" ]; then
    echo "  ENTRA_BRIDGE_CLIENT_ID=$BRIDGE_CLIENT_ID"
  fi
  if [ -n "$CLIENT_SECRET" ]; then
    echo "  OBO_CLIENT_SECRET=<the value you set with azd env set; not shown>"
  fi
else
  write_settings
  echo "Wrote $SETTINGS_FILE for local runs (func start) against app registration $CLIENT_ID."
fi

echo ""
echo "MCP server URL: $MCP_URL"
echo "VS Code: add this server to .vscode/mcp.json (or answer the 'azure' prompt with the URL above):"
cat <<JSON
{
  "servers": {
    "azure": {
      "type": "http",
      "url": "$(json_escape "$MCP_URL")"
    }
  }
}
JSON

if [ -z "$CUSTOM_DOMAIN" ]; then
  echo ""
  if [ -n "$BRIDGE_CLIENT_ID" ]; then
    echo "No custom domain set: MCP clients sign in through the sign-in bridge (app registration $BRIDGE_CLIENT_ID)."
    echo "To use your own domain instead (see docs/deploy.md), DNS records for a subdomain such as mcp.contoso.com:"
  else
    echo "No custom domain set and the sign-in bridge is off. VS Code and other clients that send the OAuth"
    echo "'resource' parameter need a custom domain (see docs/deploy.md) or the bridge (azd env set MCP_SIGN_IN_BRIDGE true)."
    echo "DNS records for a subdomain such as mcp.contoso.com:"
  fi
  echo "  CNAME mcp        -> $DEFAULT_HOST"
  echo "  TXT   asuid.mcp  -> $VERIFICATION_ID"
  echo "then: azd env set MCP_CUSTOM_DOMAIN mcp.contoso.com && azd up"
fi
