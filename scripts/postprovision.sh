#!/bin/sh
# azd postprovision hook (POSIX). Reads the provisioned values from `azd env get-values`,
# writes local.settings.json for `func start` against the same app registration (only if the
# file does not exist yet), and prints the VS Code mcp.json entry for the deployed server.
# local.settings.json gets exactly the keys of local.settings.sample.json: the values azd knows
# (tenant, app registration, allowed clients, the sign-in bridge's client ID, empty when it is off,
# and OBO_CLIENT_SECRET), the sample's defaults for the rest (e.g. MCP_ALLOWED_ORIGINS for the MCP
# Inspector). The file is readable by the current user only (chmod 600), from the moment it exists.
# It never prints a secret and writes one only if the user put OBO_CLIENT_SECRET into the
# azd environment themselves (`azd env set OBO_CLIENT_SECRET ...`).
set -eu

SETTINGS_FILE="local.settings.json"
SAMPLE_FILE="$(dirname "$0")/../local.settings.sample.json"
AZURE_CLI_CLIENT_ID="04b07795-8ddb-461a-bbee-02f9e1bf7b46"

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
# Output of the deployment: the custom domain whose binding now exists (empty without one).
BOUND_DOMAIN="$(env_value MCP_CUSTOM_DOMAIN_BOUND)"
DEFAULT_HOST="$(env_value AZURE_FUNCTION_APP_HOSTNAME)"
VERIFICATION_ID="$(env_value AZURE_CUSTOM_DOMAIN_VERIFICATION_ID)"
CLIENT_SECRET="$(env_value OBO_CLIENT_SECRET)"

if [ -z "$TENANT_ID" ] || [ -z "$CLIENT_ID" ] || [ -z "$ALLOWED_CLIENT_IDS" ]; then
  echo "postprovision: ENTRA_TENANT_ID, ENTRA_CLIENT_ID or ENTRA_ALLOWED_CLIENT_IDS is missing from the azd environment; did provisioning finish?" >&2
  exit 1
fi

# Copies the sample line by line (one "KEY": "value" per line) and replaces the value of every key
# that has an MCP_HOOK_VALUE_<KEY> variable in awk's environment; all other lines stay as they are.
write_settings() {
  if [ ! -f "$SAMPLE_FILE" ]; then
    echo "postprovision: $SAMPLE_FILE not found; it lists the keys of local.settings.json." >&2
    exit 1
  fi
  # Owner-only from the moment the file is created: it holds OBO_CLIENT_SECRET when one is set, and
  # is where a developer puts one later.
  umask 077
  MCP_HOOK_VALUE_ENTRA_TENANT_ID="$TENANT_ID" \
  MCP_HOOK_VALUE_ENTRA_CLIENT_ID="$CLIENT_ID" \
  MCP_HOOK_VALUE_ENTRA_ALLOWED_CLIENT_IDS="$ALLOWED_CLIENT_IDS" \
  MCP_HOOK_VALUE_ENTRA_APP_ID_URI="$APP_ID_URI" \
  MCP_HOOK_VALUE_ENTRA_BRIDGE_CLIENT_ID="$BRIDGE_CLIENT_ID" \
  MCP_HOOK_VALUE_OBO_CLIENT_SECRET="$CLIENT_SECRET" \
  awk '
    function json_escape(s,    out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" || c == "\"") out = out "\\" c
        else out = out c
      }
      return out
    }
    {
      line = $0
      if (match(line, /^[ \t]*"[A-Za-z_][A-Za-z0-9_]*"[ \t]*:[ \t]*"/)) {
        key = line
        sub(/^[ \t]*"/, "", key)
        sub(/".*$/, "", key)
        if (("MCP_HOOK_VALUE_" key) in ENVIRON) {
          indent = line
          sub(/".*$/, "", indent)
          comma = (line ~ /,[ \t]*$/) ? "," : ""
          line = indent "\"" key "\": \"" json_escape(ENVIRON["MCP_HOOK_VALUE_" key]) "\"" comma
        }
      }
      print line
    }
  ' "$SAMPLE_FILE" > "$SETTINGS_FILE"
  chmod 600 "$SETTINGS_FILE"
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
  echo "Wrote $SETTINGS_FILE (readable by you only) for local runs (func start) against app registration $CLIENT_ID."
fi

case ",$ALLOWED_CLIENT_IDS," in
  *",$AZURE_CLI_CLIENT_ID,"*)
    echo "Development environment: the Azure CLI is allowed and http://localhost:7071/consent is registered."
    ;;
  *)
    echo "The Azure CLI is not allowed and http://localhost:7071/consent is not registered (production defaults)."
    echo "For a development environment: azd env set MCP_DEVELOPMENT_ENVIRONMENT true && azd provision"
    ;;
esac

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
elif [ -n "$BOUND_DOMAIN" ]; then
  echo ""
  echo "Custom domain $BOUND_DOMAIN is bound with SNI TLS; later provisions update only its certificate and"
  echo "SNI binding (MCP_CUSTOM_DOMAIN_BOUND). To bind it again: azd env set MCP_CUSTOM_DOMAIN_BOUND rebind && azd provision"
fi
