"""Drift checks for the azd / Bicep deployment (infra/, azure.yaml, scripts/, .vscode/mcp.json).

There is no Bicep compiler on most machines, so these tests read the Bicep text and catch the
mistakes that would otherwise only show up in a failed `azd up`: a parameter that the parameters
file sets but main.bicep lacks, an app setting the code needs but the Bicep never sets, a setting
name outside the shared vocabulary, two sources for the allowed-client list, and so on. When a
`bicep` (or `az`) binary is present, the template is also compiled and linted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import DEFAULT_BRIDGE_REDIRECT_URIS, REQUIRED_SETTINGS, SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
PARAMETERS_FILE = INFRA / "main.parameters.json"
APP_SETTINGS_BICEP = INFRA / "modules" / "app-settings.bicep"
ENTRA_APP_BICEP = INFRA / "modules" / "entra-app.bicep"
ENTRA_BRIDGE_BICEP = INFRA / "modules" / "entra-bridge-app.bicep"
FUNCTION_APP_BICEP = INFRA / "modules" / "function-app.bicep"
CUSTOM_DOMAIN_BICEP = INFRA / "modules" / "custom-domain.bicep"
CUSTOM_DOMAIN_CERTIFICATE_BICEP = INFRA / "modules" / "custom-domain-certificate.bicep"
CUSTOM_DOMAIN_TLS_BICEP = INFRA / "modules" / "custom-domain-tls.bicep"
AZURE_YAML = ROOT / "azure.yaml"
MCP_JSON = ROOT / ".vscode" / "mcp.json"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"
POSIX_HOOK = ROOT / "scripts" / "postprovision.sh"
POWERSHELL_HOOK = ROOT / "scripts" / "postprovision.ps1"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# The settings vocabulary of the code (notes/design.md). Kept here as one constant so the lead can
# later import it from shared/settings.py instead.
# The one vocabulary: the names the code itself declares.
KNOWN_SETTINGS = frozenset(SETTING_NAMES)
# Settings the deployed app must have beyond the required ones: the audience URI of the
# api://{tenant}/{name} identifier and the secretless on-behalf-of identity.
DEPLOYED_SETTINGS = (*REQUIRED_SETTINGS, "ENTRA_APP_ID_URI", "OBO_MANAGED_IDENTITY_CLIENT_ID", "MCP_REQUEST_STATE_KEY")
# Prefixes of the code's own settings (as opposed to platform settings).
CODE_SETTING_PREFIXES = ("ENTRA_", "MCP_", "OBO_", "GRAPH_")
PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    }
)
VSCODE_CLIENT_ID = "aebc6443-996d-45c2-90f0-388ff96faa56"
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def strip_comments(text: str) -> str:
    """Bicep text without // and /* */ comments (a '//' right after ':' is a URL, not a comment)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return "\n".join(re.sub(r"(?<!:)//.*$", "", line) for line in text.splitlines())


def code(path: Path) -> str:
    return strip_comments(path.read_text(encoding="utf-8"))


def bicep_params(path: Path) -> dict[str, str]:
    """Parameter name -> the rest of its declaration line (type and default)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^param\s+(\w+)\s+(.*)$", code(path), re.MULTILINE)}


def bicep_block(text: str, opener: str) -> str:
    """The balanced {...} or [...] that starts at the first bracket after `opener`."""
    start = text.index(opener)
    brackets = {"{": "}", "[": "]"}
    index = min(i for i in (text.find("{", start), text.find("[", start)) if i != -1)
    closing, depth = brackets[text[index]], 0
    for position in range(index, len(text)):
        if text[position] == text[index]:
            depth += 1
        elif text[position] == closing:
            depth -= 1
            if depth == 0:
                return text[index : position + 1]
    raise AssertionError(f"unbalanced block after {opener!r}")


def app_settings_set_by_bicep() -> set[str]:
    """Names of the app settings written by the app-settings module: every object key in it
    except the few keys of the config resource itself."""
    keys = set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", code(APP_SETTINGS_BICEP), re.MULTILINE))
    return keys - {"name", "parent", "properties"}


def parse_simple_yaml(text: str) -> dict:
    """Parses the block-mapping subset of YAML that azure.yaml uses (no lists, no flow style)."""
    root: dict = {}
    stack: list[tuple[int, dict]] = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip().strip("\"'")
        if value:
            parent[key] = value
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


def azure_yaml() -> dict:
    return parse_simple_yaml(AZURE_YAML.read_text(encoding="utf-8"))


def parameters_file() -> dict:
    return json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]


def param_decorators(path: Path, name: str) -> str:
    """The decorator lines (@...) directly above `param <name>`."""
    lines = code(path).splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"param\s+{name}\s", line))
    decorators = []
    for line in reversed(lines[:index]):
        if not line.startswith(("@", "  ", "])", "})")):
            break
        decorators.append(line)
    return "\n".join(reversed(decorators))


def sample_values() -> dict[str, str]:
    return json.loads(SAMPLE_SETTINGS.read_text(encoding="utf-8"))["Values"]


# --- parameters -------------------------------------------------------------------------------


def test_every_parameter_in_parameters_file_is_a_param_of_main_bicep() -> None:
    parameters = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    missing = sorted(set(parameters) - set(bicep_params(MAIN_BICEP)))
    assert not missing, f"main.parameters.json sets parameters main.bicep does not declare: {missing}"


def test_main_bicep_params_without_default_are_in_parameters_file() -> None:
    parameters = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    without_default = {name for name, rest in bicep_params(MAIN_BICEP).items() if "=" not in rest}
    # azd generates these itself (and keeps them in the environment): they must not be in the file.
    generated = set(re.findall(r"type:\s*'generate'[^@]*?\}\)\s*(?:@description\([^\n]*\)\s*)?param (\w+)",
                               code(MAIN_BICEP), re.DOTALL))
    assert generated == {"requestStateKey"}
    assert not generated & set(parameters)
    assert without_default - generated <= set(parameters), sorted(without_default - generated - set(parameters))


def test_parameters_file_maps_the_azd_environment() -> None:
    parameters = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    # Optional: an unset azd variable must become '' (no custom domain), not a literal placeholder.
    assert parameters["customDomain"]["value"] == "${MCP_CUSTOM_DOMAIN=}"
    # No fallback on purpose: azd omits a parameter whose variable is unset (or passes '' which it
    # cannot read as a bool), so the Bicep default empty(customDomain) applies.
    assert parameters["enableSignInBridge"]["value"] == "${MCP_SIGN_IN_BRIDGE}"
    assert parameters["developmentEnvironment"]["value"] == "${MCP_DEVELOPMENT_ENVIRONMENT=false}"
    assert parameters["customDomainBound"]["value"] == "${MCP_CUSTOM_DOMAIN_BOUND=}"
    assert parameters["customDomainKeyVaultSecretId"]["value"] == "${MCP_CUSTOM_DOMAIN_KEY_VAULT_SECRET_ID=}"
    assert parameters["serviceManagementReference"]["value"] == "${AZURE_SERVICE_MANAGEMENT_REFERENCE=}"


def test_sign_in_bridge_defaults_to_on_without_a_custom_domain() -> None:
    assert bicep_params(MAIN_BICEP)["enableSignInBridge"] == "bool = empty(customDomain)"


def test_main_bicep_targets_the_subscription_and_creates_the_resource_group() -> None:
    text = code(MAIN_BICEP)
    assert re.search(r"^targetScope\s*=\s*'subscription'", text, re.MULTILINE)
    assert "'Microsoft.Resources/resourceGroups@" in text


# --- app settings -----------------------------------------------------------------------------


def test_required_settings_are_set_by_bicep() -> None:
    missing = [name for name in DEPLOYED_SETTINGS if name not in app_settings_set_by_bicep()]
    assert not missing, f"the function app Bicep does not set: {missing}"


def test_every_code_setting_in_bicep_is_in_the_vocabulary() -> None:
    code_settings = {name for name in app_settings_set_by_bicep() if name.startswith(CODE_SETTING_PREFIXES)}
    unknown = sorted(code_settings - KNOWN_SETTINGS)
    assert not unknown, f"settings outside the shared vocabulary: {unknown}"


def test_app_settings_are_exactly_code_plus_platform_settings() -> None:
    unexpected = sorted(app_settings_set_by_bicep() - KNOWN_SETTINGS - PLATFORM_SETTINGS)
    assert not unexpected, f"unexpected app settings: {unexpected}"


def test_public_base_url_only_with_custom_domain() -> None:
    text = code(APP_SETTINGS_BICEP)
    assert re.search(r"empty\(publicBaseUrl\)\s*\?\s*\{\}\s*:\s*\{\s*MCP_PUBLIC_BASE_URL:", text)
    assert re.search(r"publicBaseUrl:\s*hasCustomDomain\s*\?\s*publicBaseUrl\s*:\s*''", code(MAIN_BICEP))


def test_app_settings_are_written_in_one_place() -> None:
    writers = [p.name for p in bicep_files() if re.search(r"name:\s*'appsettings'", code(p))]
    assert writers == [APP_SETTINGS_BICEP.name]
    for path in bicep_files():
        assert "appSettings:" not in code(path), f"{path.name} sets siteConfig.appSettings"


@pytest.mark.parametrize("setting", ["FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AZURE_CLIENT_ID"])
def test_flex_and_identity_settings_are_not_set(setting: str) -> None:
    offenders = [p.name for p in bicep_files() if re.search(rf"\b{setting}\b", code(p))]
    assert not offenders, f"{setting} must not be set on Flex Consumption / for the app: {offenders}"


def test_identity_based_storage_and_entra_telemetry() -> None:
    text = code(APP_SETTINGS_BICEP)
    assert re.search(r"AzureWebJobsStorage__credential:\s*'managedidentity'", text)
    assert "AzureWebJobsStorage__clientId: identityClientId" in text
    assert "'ClientId=${identityClientId};Authorization=AAD'" in text
    assert "AzureWebJobsStorage:" not in text  # no connection string
    storage = code(INFRA / "modules" / "storage.bicep")
    assert re.search(r"allowSharedKeyAccess:\s*false", storage)
    monitoring = code(INFRA / "modules" / "monitoring.bicep")
    assert re.search(r"DisableLocalAuth:\s*true", monitoring)


# --- Entra app registration --------------------------------------------------------------------


def test_bicepconfig_has_the_graph_extension() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    reference = config["extensions"]["microsoftGraphV1"]
    assert reference.startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")


def test_graph_modules_declare_the_extension() -> None:
    graph_modules = [p for p in bicep_files() if "'Microsoft.Graph/" in code(p)]
    assert graph_modules, "no module creates Microsoft Graph resources"
    for path in graph_modules:
        assert re.search(r"^extension\s+microsoftGraphV1\s*$", code(path), re.MULTILINE), path.name


def test_entra_app_shape() -> None:
    text = code(ENTRA_APP_BICEP)
    assert "signInAudience: 'AzureADMyOrg'" in text
    assert re.search(r"requestedAccessTokenVersion:\s*2\b", text)
    assert "value: 'user_impersonation'" in text
    # Stable scope ID: derived with guid() from deterministic inputs, never newGuid().
    assert re.search(r"var userImpersonationScopeId = guid\(tenantId, uniqueName, 'user_impersonation'\)", text)
    assert "newGuid(" not in text
    # Graph User.Read, delegated.
    assert "00000003-0000-0000-c000-000000000000" in text
    assert "e1fe6dd8-ba31-4d61-89e7-88639da4683d" in text
    assert "type: 'Scope'" in text
    assert "'Microsoft.Graph/servicePrincipals@v1.0'" in text
    assert "'${publicBaseUrl}/consent'" in text


def test_identifier_uris_are_well_formed() -> None:
    text = code(ENTRA_APP_BICEP)
    api_uri = re.search(r"var apiIdentifierUri = '([^']*)'", text)
    custom_uri = re.search(r"var customIdentifierUri = '([^']*)'", text)
    assert api_uri and custom_uri
    assert api_uri.group(1) == "api://${tenantId}/${uniqueName}"
    assert custom_uri.group(1) == "https://${customDomain}/mcp"
    for uri in (api_uri.group(1), custom_uri.group(1)):
        assert not uri.endswith("/"), f"identifier URI must not end with '/': {uri}"
    assert "appId}" not in api_uri.group(1), "an app cannot reference its own appId"


def test_federated_credential_trusts_the_managed_identity() -> None:
    text = code(ENTRA_APP_BICEP)
    assert "'federatedIdentityCredentials@v1.0'" in text
    assert "name: '${app.uniqueName}/" in text
    assert "issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'" in text
    assert "subject: managedIdentityPrincipalId" in text
    assert "'api://AzureADTokenExchange'" in text
    assert "managedIdentityPrincipalId: identity.outputs.principalId" in code(MAIN_BICEP)


def test_preauthorized_clients_and_allowed_clients_come_from_one_list() -> None:
    main = code(MAIN_BICEP)
    # One list: the parameter, plus the Azure CLI in a development environment and the sign-in
    # bridge's client ID when the bridge is on; union() drops duplicates.
    assert re.search(
        r"^var clientApplicationIds = union\(allowedClientApplicationIds, "
        r"developmentEnvironment \? \[azureCliClientId\] : \[\], "
        r"enableSignInBridge \? \[signInBridgeClientId\] : \[\]\)$",
        main,
        re.MULTILINE,
    )
    assert "preAuthorizedClientIds: clientApplicationIds" in main
    # The server also admits agents (app-only callers), which are never pre-authorized for the scope.
    assert re.search(r"^var serverClientIds = union\(clientApplicationIds, agentClientIds\)$", main, re.MULTILINE)
    assert "allowedClientIds: serverClientIds" in main
    output = r"^output ENTRA_ALLOWED_CLIENT_IDS string = join\(serverClientIds, ','\)$"
    assert re.search(output, main, re.MULTILINE)
    uses = re.findall(r"\ballowedClientApplicationIds\b", main)
    assert len(uses) == 2, "allowedClientApplicationIds is used directly instead of clientApplicationIds"
    entra = code(ENTRA_APP_BICEP)
    assert re.search(r"preAuthorizedApplications:\s*\[\s*for\s+(\w+)\s+in\s+preAuthorizedClientIds:", entra)
    assert re.search(r"delegatedPermissionIds:\s*\[\s*userImpersonationScopeId\s*\]", entra)
    assert re.search(r"ENTRA_ALLOWED_CLIENT_IDS:\s*join\(allowedClientIds,\s*','\)", code(APP_SETTINGS_BICEP))
    # No client ID is hard-coded anywhere else in the Bicep.
    for path in bicep_files():
        if path != MAIN_BICEP:
            for literal in (VSCODE_CLIENT_ID, AZURE_CLI_CLIENT_ID):
                assert literal not in path.read_text(encoding="utf-8"), f"{literal} hard-coded in {path.name}"


def test_azure_cli_is_a_development_opt_in_from_one_azd_value() -> None:
    # Issue 10, item 9: the Azure CLI (public client, device-code sign-in) is neither pre-authorized nor
    # allowed by default; one azd value (MCP_DEVELOPMENT_ENVIRONMENT) adds it, and the allowed-client list
    # has one source (the Bicep default), not a second copy in main.parameters.json.
    main = code(MAIN_BICEP)
    assert GUID.findall(bicep_block(main, "param allowedClientApplicationIds")) == [VSCODE_CLIENT_ID]
    assert "allowedClientApplicationIds" not in parameters_file()
    assert bicep_params(MAIN_BICEP)["developmentEnvironment"] == "bool = false"
    assert re.search(rf"^var azureCliClientId = '{AZURE_CLI_CLIENT_ID}'$", main, re.MULTILINE)
    assert main.count(AZURE_CLI_CLIENT_ID) == 1
    assert "developmentEnvironment ? [azureCliClientId] : []" in main


def test_localhost_consent_redirect_only_in_a_development_environment() -> None:
    # Issue 10, item 13: production registrations keep only the deployed consent page.
    entra = code(ENTRA_APP_BICEP)
    assert bicep_params(ENTRA_APP_BICEP)["localConsentRedirectUri"] == "bool = false"
    assert re.search(
        r"^var consentRedirectUris = concat\(\['\$\{publicBaseUrl\}/consent'\], "
        r"localConsentRedirectUri \? \['http://localhost:7071/consent'\] : \[\]\)$",
        entra,
        re.MULTILINE,
    )
    assert re.search(r"web:\s*\{\s*redirectUris:\s*consentRedirectUris\s*\}", entra)
    outside_descriptions = "\n".join(line for line in entra.splitlines() if not line.startswith("@description("))
    assert outside_descriptions.count("http://localhost:7071/consent") == 1
    assert "localConsentRedirectUri: developmentEnvironment" in bicep_block(code(MAIN_BICEP), "module entraApp")


@pytest.mark.parametrize("path", [ENTRA_APP_BICEP, ENTRA_BRIDGE_BICEP], ids=lambda p: p.name)
def test_app_registrations_are_tagged_and_take_a_service_management_reference(path: Path) -> None:
    # Issue 10, item 11: azd down leaves the registrations behind (findable by tag), and tenants whose app
    # management policy requires a service management reference get one; empty by default -> null.
    text = code(path)
    params = bicep_params(path)
    assert params["tags"] == "array = []"
    assert params["serviceManagementReference"] == "string = ''"
    assert re.search(r"^  tags: tags$", text, re.MULTILINE)
    assert re.search(
        r"^  serviceManagementReference: empty\(serviceManagementReference\) \? null : serviceManagementReference$",
        text,
        re.MULTILINE,
    )
    main = code(MAIN_BICEP)
    module = bicep_block(main, "module entraApp" if path == ENTRA_APP_BICEP else "module signInBridge")
    assert "tags: appRegistrationTags" in module
    assert "serviceManagementReference: serviceManagementReference" in module
    assert "'azd-env-name:${environmentName}'" in bicep_block(main, "var appRegistrationTags")
    assert bicep_params(MAIN_BICEP)["serviceManagementReference"] == "string = ''"


def test_app_registration_template_tag_matches_azure_yaml() -> None:
    template = azure_yaml()["metadata"]["template"]
    name = template.split("@", 1)[0]
    assert f"'azd-template:{name}'" in bicep_block(code(MAIN_BICEP), "var appRegistrationTags")


# --- sign-in bridge ---------------------------------------------------------------------------


def bridge_redirect_uris() -> list[str]:
    """The redirect URIs the bridge module registers: the string items of its `var redirectUris` array."""
    return re.findall(r"'([^']*)'", bicep_block(code(ENTRA_BRIDGE_BICEP), "var redirectUris"))


def test_the_bridge_app_redirects_only_to_the_bridges_callback() -> None:
    # Never the MCP clients' redirect URIs: Entra would then hand codes to them without the bridge's consent
    # check (a link to Entra with this public client ID is easy to make). Only the bridge's own callback.
    from shared.bridge.metadata import CALLBACK_PATH

    text = code(ENTRA_BRIDGE_BICEP)
    assert f"var callbackPath = '{CALLBACK_PATH}'" in text
    assert bridge_redirect_uris() == ["${publicBaseUrl}${callbackPath}", "http://localhost${callbackPath}",
                                      "http://127.0.0.1${callbackPath}"]
    assert re.search(r"publicClient:\s*\{\s*redirectUris:\s*redirectUris\s*\}", text)
    # As Entra compares them (loopback: any port), none of the bridge's redirect URIs is one an MCP client uses:
    # otherwise a link to Entra with this client ID could deliver a code straight to that client.
    from shared.bridge.redirects import redirect_matches

    registered = [uri.replace("${callbackPath}", CALLBACK_PATH).replace("${publicBaseUrl}", "https://app.example")
                  for uri in bridge_redirect_uris()]
    for client_uri in DEFAULT_BRIDGE_REDIRECT_URIS:
        for port in ("", ":6274", ":33418"):
            concrete = client_uri.replace("localhost/", f"localhost{port}/").replace("127.0.0.1/", f"127.0.0.1{port}/")
            assert not any(redirect_matches(entra_uri, concrete) for entra_uri in registered), concrete
    assert "publicBaseUrl: publicBaseUrl" in bicep_block(code(MAIN_BICEP), "module signInBridge")


def test_bridge_app_is_a_single_tenant_public_client_without_credentials() -> None:
    text = code(ENTRA_BRIDGE_BICEP)
    assert len(re.findall(r"'Microsoft\.Graph/applications@v1\.0'", text)) == 1
    assert "'Microsoft.Graph/servicePrincipals@v1.0'" in text
    assert "signInAudience: 'AzureADMyOrg'" in text
    # Not a "public client flows" app: that would allow device-code and password sign-in with this
    # pre-authorized client ID. The code flow is public through publicClient.redirectUris alone.
    assert re.search(r"isFallbackPublicClient:\s*false\b", text)
    for absent in ("passwordCredentials", "keyCredentials", "federatedIdentityCredentials", "web:", "spa:",
                   "identifierUris", "api:", "newGuid("):
        assert absent not in text, f"the bridge app must not have {absent}"
    assert "relationships: empty(ownerPrincipalId) ? [] : [ownerPrincipalId]" in text
    assert re.search(r"^output clientId string = app\.appId$", text, re.MULTILINE)
    assert re.search(r"^output redirectUris array = redirectUris$", text, re.MULTILINE)


def test_bridge_app_does_not_reference_the_api_app() -> None:
    # The API app pre-authorizes the bridge; the other direction would be a deployment cycle.
    params = set(bicep_params(ENTRA_BRIDGE_BICEP))
    assert params == {"uniqueName", "displayName", "publicBaseUrl", "ownerPrincipalId", "tags",
                      "serviceManagementReference"}, sorted(params)
    module = bicep_block(code(MAIN_BICEP), "module signInBridge")
    assert "entraApp" not in module and "appSettings" not in module


def test_main_deploys_the_bridge_only_when_enabled_and_names_it_like_the_api_app() -> None:
    main = code(MAIN_BICEP)
    assert re.search(r"^module signInBridge 'modules/entra-bridge-app\.bicep' = if \(enableSignInBridge\) \{",
                     main, re.MULTILINE)
    unique_name = r"^var bridgeRegistrationUniqueName = '\$\{appRegistrationUniqueName\}-bridge'$"
    assert re.search(unique_name, main, re.MULTILINE)
    module = bicep_block(main, "module signInBridge")
    assert "uniqueName: bridgeRegistrationUniqueName" in module
    assert "ownerPrincipalId: principalId" in module
    assert "sign-in bridge" in module  # display name "<API name> sign-in bridge"


def test_bridge_client_id_reaches_preauthorization_settings_and_outputs() -> None:
    main = code(MAIN_BICEP)
    assert re.search(r"^var signInBridgeClientId = enableSignInBridge \? signInBridge!\.outputs\.clientId : ''$",
                     main, re.MULTILINE)
    # Pre-authorized on the scope and allowed by the server: both through clientApplicationIds.
    assert "[signInBridgeClientId]" in main
    assert "preAuthorizedClientIds: clientApplicationIds" in bicep_block(main, "module entraApp")
    settings_module = bicep_block(main, "module appSettings")
    assert "allowedClientIds: serverClientIds" in settings_module
    assert "bridgeClientId: signInBridgeClientId" in settings_module
    # Empty when the bridge is off.
    assert re.search(r"^output ENTRA_BRIDGE_CLIENT_ID string = signInBridgeClientId$", main, re.MULTILINE)


def test_bridge_app_settings_only_when_the_bridge_is_on() -> None:
    text = code(APP_SETTINGS_BICEP)
    assert re.search(r"^param bridgeClientId string = ''$", text, re.MULTILINE)
    block = re.search(r"var bridgeSettings = empty\(bridgeClientId\) \? \{\} : (\{[^}]*\})", text)
    assert block, "ENTRA_BRIDGE_CLIENT_ID must be set only when the bridge is on"
    assert "ENTRA_BRIDGE_CLIENT_ID: bridgeClientId" in block.group(1)
    assert "MCP_BRIDGE_REDIRECT_URIS" not in block.group(1)  # the code default: not Entra's list
    assert re.search(r"properties:\s*union\([^)]*\bbridgeSettings\)", text)
    assert "ENTRA_BRIDGE_CLIENT_ID" in KNOWN_SETTINGS


def test_sample_settings_have_the_bridge_off() -> None:
    assert sample_values()["ENTRA_BRIDGE_CLIENT_ID"] == ""


# --- function app -----------------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_and_locked_down() -> None:
    text = code(FUNCTION_APP_BICEP)
    assert "name: 'FC1'" in text and "tier: 'FlexConsumption'" in text
    assert "name: 'python'" in text and "version: pythonVersion" in text
    assert "type: 'UserAssignedIdentity'" in text
    assert re.search(r"httpsOnly:\s*true", text)
    assert "minTlsVersion: '1.2'" in text
    assert "ftpsState: 'Disabled'" in text
    for policy in ("ftp", "scm"):
        # Basic publishing credentials off: name: 'ftp' / 'scm' followed by properties { allow: false }.
        assert re.search(rf"name:\s*'{policy}'\s*properties:\s*\{{\s*allow:\s*false\s*\}}", text), policy


def test_easy_auth_is_not_configured() -> None:
    for path in bicep_files():
        assert not re.search(r"authsettings", code(path), re.IGNORECASE), f"{path.name} configures Easy Auth"


def test_python_default_is_313_in_bicep_and_parameters_file() -> None:
    assert re.search(r"^param pythonVersion string = '3\.13'$", code(MAIN_BICEP), re.MULTILINE)
    allowed = re.findall(r"'([0-9.]+)'", bicep_block(param_decorators(MAIN_BICEP, "pythonVersion"), "@allowed"))
    assert allowed == ["3.11", "3.12", "3.13"]
    assert parameters_file()["pythonVersion"]["value"] == "${FUNCTION_PYTHON_VERSION=3.13}"
    assert "pythonVersion: pythonVersion" in bicep_block(code(MAIN_BICEP), "module functionApp")


def test_maximum_instance_count_bounds_match_flex_consumption() -> None:
    # Issue 10, item 12. Learn, "Flex Consumption plan hosting" (ms.date 2026-03-18), Considerations:
    # "The lowest maximum scale is currently 1. The highest currently supported value is 1000." The 40
    # in the issue is the 2024-2025 preview text.
    decorators = param_decorators(MAIN_BICEP, "maximumInstanceCount")
    assert re.search(r"^@minValue\(1\)$", decorators, re.MULTILINE)
    assert re.search(r"^@maxValue\(1000\)$", decorators, re.MULTILINE)
    value = parameters_file()["maximumInstanceCount"]["value"]
    fallback = re.fullmatch(r"\$\{FUNCTION_MAXIMUM_INSTANCE_COUNT=(\d+)\}", value)
    assert fallback and 1 <= int(fallback.group(1)) <= 1000
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert "`FUNCTION_MAXIMUM_INSTANCE_COUNT` (1-1000" in doc
    assert "lowest maximum" in doc


# --- custom domain ---------------------------------------------------------------------------


def test_custom_domain_is_bound_once_then_only_certificate_and_sni() -> None:
    # Issue 10, item 8: the binding with sslState 'Disabled' is applied only while the domain is not yet
    # bound; later deployments update the certificate and the one SNI binding, so HTTPS never drops.
    main = code(MAIN_BICEP)
    assert bicep_params(MAIN_BICEP)["customDomainBound"] == "string = ''"
    assert re.search(
        r"^var customDomainAlreadyBound = hasCustomDomain && toLower\(trim\(customDomainBound\)\) == customDomainName$",
        main,
        re.MULTILINE,
    )
    binding = r"^module customDomainBinding 'modules/custom-domain\.bicep' = "
    assert re.search(binding + r"if \(hasCustomDomain && !customDomainAlreadyBound\)", main, re.MULTILINE)
    assert re.search(
        r"^module customDomainCertificate 'modules/custom-domain-certificate\.bicep' = if \(hasCustomDomain\)",
        main,
        re.MULTILINE,
    )
    assert re.search(r"^module customDomainTls 'modules/custom-domain-tls\.bicep' = if \(hasCustomDomain\)",
                     main, re.MULTILINE)
    assert "customDomainBinding" in bicep_block(main, "module customDomainCertificate")
    assert "customDomainCertificate!.outputs.thumbprint" in bicep_block(main, "module customDomainTls")
    # azd stores outputs only after a successful deployment: the next one reads this back.
    assert re.search(r"^output MCP_CUSTOM_DOMAIN_BOUND string = customDomainName$", main, re.MULTILINE)
    # TLS off exists once, in the module main.bicep skips for a bound domain; no certificate there.
    disabled = [p.name for p in bicep_files() if re.search(r"sslState:\s*'Disabled'", code(p))]
    assert disabled == [CUSTOM_DOMAIN_BICEP.name]
    assert "certificates@" not in code(CUSTOM_DOMAIN_BICEP)
    assert re.search(r"sslState:\s*'SniEnabled'", code(CUSTOM_DOMAIN_TLS_BICEP))
    assert len(re.findall(r"'Microsoft\.Web/sites/hostNameBindings@", code(CUSTOM_DOMAIN_TLS_BICEP))) == 1


def test_custom_domain_certificate_is_managed_or_from_key_vault() -> None:
    main = code(MAIN_BICEP)
    assert bicep_params(MAIN_BICEP)["customDomainKeyVaultSecretId"] == "string = ''"
    assert "keyVaultSecretId: customDomainKeyVaultSecretId" in bicep_block(main, "module customDomainCertificate")
    text = code(CUSTOM_DOMAIN_CERTIFICATE_BICEP)
    assert "'Microsoft.Web/sites/certificates@" in text
    assert re.search(r"^var useKeyVault = !empty\(keyVaultSecretId\)$", text, re.MULTILINE)
    assert re.search(r"keyVaultId: keyVaultId\s*keyVaultSecretName: keyVaultSecretName", text)
    assert "canonicalName: customDomain" in text
    # Different names: switching the source creates the other certificate instead of rewriting one.
    assert "name: useKeyVault ? '${baseName}-kv' : baseName" in text
    assert re.search(r"^output thumbprint string = certificate\.properties\.thumbprint$", text, re.MULTILINE)


def test_outputs_for_azd() -> None:
    outputs = set(re.findall(r"^output\s+(\w+)\s", code(MAIN_BICEP), re.MULTILINE))
    expected = {
        "MCP_URL",
        "MCP_CUSTOM_DOMAIN_BOUND",
        "ENTRA_TENANT_ID",
        "ENTRA_CLIENT_ID",
        "ENTRA_APP_ID_URI",
        "ENTRA_ALLOWED_CLIENT_IDS",
        "ENTRA_BRIDGE_CLIENT_ID",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_HOSTNAME",
        "AZURE_CUSTOM_DOMAIN_VERIFICATION_ID",
    }
    assert expected <= outputs, sorted(expected - outputs)


def test_referenced_modules_exist_and_none_is_orphaned() -> None:
    referenced: set[Path] = set()
    for path in bicep_files():
        for relative in re.findall(r"^module\s+\w+\s+'([^']+)'", code(path), re.MULTILINE):
            target = (path.parent / relative).resolve()
            assert target.is_file(), f"{path.name} references missing module {relative}"
            referenced.add(target)
    modules = {p.resolve() for p in (INFRA / "modules").glob("*.bicep")}
    assert modules <= referenced, sorted(p.name for p in modules - referenced)


# --- azd project, hooks, VS Code ------------------------------------------------------------------


def test_azure_yaml_names_the_service_and_hooks() -> None:
    config = azure_yaml()
    services = config["services"]
    assert list(services) == ["mcp"]
    service = services["mcp"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    hook = config["hooks"]["postprovision"]
    for platform, script in (("posix", "scripts/postprovision.sh"), ("windows", "scripts/postprovision.ps1")):
        assert hook[platform]["run"] == script
        assert (ROOT / script).is_file(), f"{script} does not exist"
    assert hook["posix"]["shell"] == "sh"
    assert hook["windows"]["shell"] == "pwsh"


def test_azure_yaml_names_the_template_and_the_minimum_azd() -> None:
    config = azure_yaml()
    assert re.fullmatch(r"entra-mcp-functions-python@\d+\.\d+\.\d+", config["metadata"]["template"])
    # azd 1.17.0 bundles Bicep 0.36.1, the Graph extension's minimum (Azure/azure-dev CHANGELOG, #5245);
    # Flex Consumption deployment arrived in 1.9.4 (#4003).
    assert config["requiredVersions"]["azd"] == ">= 1.17.0"


def test_service_name_equals_azd_service_name_tag() -> None:
    service_name = next(iter(azure_yaml()["services"]))
    assert re.search(rf"^var serviceName = '{service_name}'$", code(MAIN_BICEP), re.MULTILINE)
    assert "serviceName: serviceName" in code(MAIN_BICEP)
    assert "'azd-service-name': serviceName" in code(FUNCTION_APP_BICEP)


def test_posix_hook_is_executable_and_parses() -> None:
    script = ROOT / "scripts" / "postprovision.sh"
    assert script.stat().st_mode & stat.S_IXUSR, "postprovision.sh must be executable"
    shell = shutil.which("sh") or shutil.which("bash")
    if shell is None:
        pytest.skip("no POSIX shell to syntax-check the hook")
    subprocess.run([shell, "-n", str(script)], check=True, timeout=10)


def _run_posix_hook(
    tmp_path: Path, values: dict[str, str], bare: frozenset[str] = frozenset()
) -> subprocess.CompletedProcess[str]:
    """Runs the hook against a fake `azd` that prints `values` as `azd env get-values` does;
    names in `bare` are printed unquoted, as godotenv does for integer-like values."""
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX sh to run the hook")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    lines = "\n".join(f"{key}={value}" if key in bare else f'{key}="{value}"' for key, value in values.items())
    azd = fake_bin / "azd"
    azd.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n", encoding="utf-8")
    azd.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [shell, str(ROOT / "scripts" / "postprovision.sh")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20, check=True,
    )


HOOK_VALUES = {
    "ENTRA_TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "ENTRA_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "ENTRA_ALLOWED_CLIENT_IDS": f"{VSCODE_CLIENT_ID},{AZURE_CLI_CLIENT_ID}",
    "ENTRA_APP_ID_URI": "api://11111111-1111-1111-1111-111111111111/mcp-dev-abc",
    "MCP_URL": "https://func-mcp-abc.azurewebsites.net/mcp",
    "AZURE_FUNCTION_IDENTITY_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
}


# The keys the hooks fill in from azd; every other key of the sample keeps the sample's value.
HOOK_KNOWN_KEYS = frozenset(
    {"ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS", "ENTRA_APP_ID_URI", "ENTRA_BRIDGE_CLIENT_ID",
     "OBO_CLIENT_SECRET"}
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_writes_exactly_the_sample_keys_once_and_without_secrets(tmp_path: Path) -> None:
    # Issue 10, item 10: the same keys as local.settings.sample.json (MCP_ALLOWED_ORIGINS for the Inspector,
    # AzureWebJobsStorage, ...), in the same order; azd's values where it knows them, the sample's otherwise.
    result = _run_posix_hook(tmp_path, HOOK_VALUES)
    settings = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))
    assert settings["IsEncrypted"] is False
    values = settings["Values"]
    sample = sample_values()
    assert list(values) == list(sample)
    for name in ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS", "ENTRA_APP_ID_URI"):
        assert values[name] == HOOK_VALUES[name]
    for name in set(sample) - HOOK_KNOWN_KEYS:
        assert values[name] == sample[name], name
    assert values["MCP_ALLOWED_ORIGINS"] == "http://localhost:6274"
    # The managed identity does not exist locally, no secret was asked for, the bridge is off.
    assert "OBO_MANAGED_IDENTITY_CLIENT_ID" not in values
    assert values["OBO_CLIENT_SECRET"] == "" and values["ENTRA_BRIDGE_CLIENT_ID"] == ""
    assert '"url": "https://func-mcp-abc.azurewebsites.net/mcp"' in result.stdout
    # An existing file is never overwritten.
    (tmp_path / "local.settings.json").write_text("{}", encoding="utf-8")
    _run_posix_hook(tmp_path, HOOK_VALUES)
    assert (tmp_path / "local.settings.json").read_text(encoding="utf-8") == "{}"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_makes_the_file_owner_only_even_without_a_secret(tmp_path: Path) -> None:
    _run_posix_hook(tmp_path, HOOK_VALUES)
    assert stat.S_IMODE((tmp_path / "local.settings.json").stat().st_mode) == 0o600
    text = POSIX_HOOK.read_text(encoding="utf-8")
    # umask before the file exists, not only a chmod afterwards.
    assert text.index("umask 077") < text.index('> "$SETTINGS_FILE"') < text.index('chmod 600 "$SETTINGS_FILE"')


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_escapes_values_for_json(tmp_path: Path) -> None:
    secret = 'not-a-real~secret"with\\quote'
    # Passed as godotenv prints it (backslash escapes inside double quotes).
    _run_posix_hook(tmp_path, {**HOOK_VALUES, "OBO_CLIENT_SECRET": secret.replace("\\", "\\\\").replace('"', '\\"')})
    values = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert values["OBO_CLIENT_SECRET"] == secret


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_writes_a_requested_secret_but_never_prints_it(tmp_path: Path) -> None:
    secret = "not-a-real-secret~value.123"
    result = _run_posix_hook(tmp_path, {**HOOK_VALUES, "OBO_CLIENT_SECRET": secret})
    values = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert values["OBO_CLIENT_SECRET"] == secret
    assert stat.S_IMODE((tmp_path / "local.settings.json").stat().st_mode) == 0o600
    assert secret not in result.stdout + result.stderr
    result = _run_posix_hook(tmp_path, {**HOOK_VALUES, "OBO_CLIENT_SECRET": secret})
    assert secret not in result.stdout + result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_reads_unquoted_values(tmp_path: Path) -> None:
    # `azd env get-values` prints integer-like values without quotes (godotenv.Marshal).
    values = {**HOOK_VALUES, "ENTRA_APP_ID_URI": "12345", "OBO_CLIENT_SECRET": "987654321"}
    result = _run_posix_hook(tmp_path, values, bare=frozenset({"ENTRA_APP_ID_URI", "OBO_CLIENT_SECRET"}))
    written = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert written["ENTRA_APP_ID_URI"] == "12345"
    assert written["OBO_CLIENT_SECRET"] == "987654321"
    assert written["ENTRA_TENANT_ID"] == HOOK_VALUES["ENTRA_TENANT_ID"]
    assert "987654321" not in result.stdout + result.stderr


BRIDGE_CLIENT_ID = "44444444-4444-4444-4444-444444444444"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_writes_the_bridge_client_id_when_set(tmp_path: Path) -> None:
    bridged = {
        **HOOK_VALUES,
        "ENTRA_ALLOWED_CLIENT_IDS": f"{HOOK_VALUES['ENTRA_ALLOWED_CLIENT_IDS']},{BRIDGE_CLIENT_ID}",
        "ENTRA_BRIDGE_CLIENT_ID": BRIDGE_CLIENT_ID,
    }
    _run_posix_hook(tmp_path, bridged)
    values = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert values["ENTRA_BRIDGE_CLIENT_ID"] == BRIDGE_CLIENT_ID
    assert BRIDGE_CLIENT_ID in values["ENTRA_ALLOWED_CLIENT_IDS"].split(",")
    assert values["OBO_CLIENT_SECRET"] == ""
    # Existing file: left alone, but the hook says what it should contain.
    result = _run_posix_hook(tmp_path, bridged)
    assert f"ENTRA_BRIDGE_CLIENT_ID={BRIDGE_CLIENT_ID}" in result.stdout
    # Bridge off: the output is empty, and so is the setting (empty means unset to the code).
    off = tmp_path / "off"
    off.mkdir()
    _run_posix_hook(off, {**HOOK_VALUES, "ENTRA_BRIDGE_CLIENT_ID": ""})
    values = json.loads((off / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert values["ENTRA_BRIDGE_CLIENT_ID"] == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_keeps_the_file_private_with_a_secret_and_the_bridge(tmp_path: Path) -> None:
    values = {**HOOK_VALUES, "ENTRA_BRIDGE_CLIENT_ID": BRIDGE_CLIENT_ID, "OBO_CLIENT_SECRET": "not-a-real-secret"}
    _run_posix_hook(tmp_path, values)
    written = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert written["ENTRA_BRIDGE_CLIENT_ID"] == BRIDGE_CLIENT_ID
    assert written["OBO_CLIENT_SECRET"] == "not-a-real-secret"
    assert stat.S_IMODE((tmp_path / "local.settings.json").stat().st_mode) == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX hook")
def test_posix_hook_says_whether_this_is_a_development_environment(tmp_path: Path) -> None:
    result = _run_posix_hook(tmp_path, {**HOOK_VALUES, "ENTRA_ALLOWED_CLIENT_IDS": VSCODE_CLIENT_ID})
    assert "azd env set MCP_DEVELOPMENT_ENVIRONMENT true" in result.stdout
    dev = tmp_path / "dev"
    dev.mkdir()
    result = _run_posix_hook(dev, HOOK_VALUES)  # the CLI is in ENTRA_ALLOWED_CLIENT_IDS
    assert "Development environment" in result.stdout


def test_hooks_fill_in_the_same_keys_and_only_keys_of_the_sample() -> None:
    posix = set(re.findall(r"^\s*MCP_HOOK_VALUE_([A-Za-z_][A-Za-z0-9_]*)=", POSIX_HOOK.read_text(encoding="utf-8"),
                           re.MULTILINE))
    powershell_text = POWERSHELL_HOOK.read_text(encoding="utf-8")
    known_block = powershell_text[powershell_text.index("$known = @{"):]
    known_block = known_block[: known_block.index("}")]
    powershell = set(re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'\s*=", known_block))
    assert posix == powershell == HOOK_KNOWN_KEYS
    assert set(sample_values()) >= HOOK_KNOWN_KEYS


def test_powershell_hook_mirrors_the_posix_hook() -> None:
    text = POWERSHELL_HOOK.read_text(encoding="utf-8")
    assert "azd env get-values" in text
    assert "Test-Path $settingsFile" in text
    assert "OBO_MANAGED_IDENTITY_CLIENT_ID" not in text
    for name in ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS", "ENTRA_APP_ID_URI", "MCP_URL",
                 "ENTRA_BRIDGE_CLIENT_ID", "MCP_CUSTOM_DOMAIN_BOUND"):
        assert f"'{name}'" in text
    # The keys and defaults come from the sample itself, in its order.
    assert "'local.settings.sample.json'" in text
    assert "foreach ($property in $sample.Values.PSObject.Properties)" in text
    assert "MCP_DEVELOPMENT_ENVIRONMENT true" in text


def test_powershell_hook_restricts_the_file_on_every_os() -> None:
    # Issue 10, item 10: an ACL for the current user alone on Windows (no inherited entries), chmod 600
    # elsewhere, applied to the empty file before anything is written into it.
    text = POWERSHELL_HOOK.read_text(encoding="utf-8")
    protect = text[text.index("function Protect-SettingsFile"):]
    protect = protect[: protect.index("\n}\n")]
    assert "[System.PlatformID]::Win32NT" in protect
    assert re.search(r'icacls\.exe \$path /inheritance:r /grant:r "\*\$\{sid\}:\(F\)"', protect)
    assert "WindowsIdentity]::GetCurrent().User" in protect
    assert "& chmod 600 $path" in protect
    assert protect.count("$LASTEXITCODE -ne 0") == 2
    creates = text.index("New-Item -ItemType File -Path $settingsPath")
    protects = text.index("Protect-SettingsFile $settingsPath")
    writes = text.index("[System.IO.File]::WriteAllText($settingsPath")
    assert creates < protects < writes
    assert "Set-Content" not in text


def test_vscode_mcp_json() -> None:
    config = json.loads(MCP_JSON.read_text(encoding="utf-8"))
    servers = config["servers"]
    assert servers["local"] == {"type": "http", "url": "http://localhost:7071/mcp"}
    assert servers["azure"]["type"] == "http"
    input_ids = {item["id"] for item in config.get("inputs", [])}
    for server in servers.values():
        for reference in re.findall(r"\$\{input:([^}]+)\}", server["url"]):
            assert reference in input_ids, f"undefined input {reference}"


# --- optional compiler check ------------------------------------------------------------------


def _bicep_commands() -> list[list[str]] | None:
    if shutil.which("bicep"):
        return [["bicep", "build", str(MAIN_BICEP), "--stdout"], ["bicep", "lint", str(MAIN_BICEP)]]
    if shutil.which("az"):
        return [
            ["az", "bicep", "build", "--file", str(MAIN_BICEP), "--stdout"],
            ["az", "bicep", "lint", "--file", str(MAIN_BICEP)],
        ]
    return None


def test_bicep_build_and_lint() -> None:
    commands = _bicep_commands()
    if commands is None:
        pytest.skip("no `bicep` or `az` on PATH; the Bicep is only checked by the text tests above")
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        output = result.stdout + result.stderr
        # BCP192: the Graph extension could not be restored from mcr.microsoft.com (offline machine).
        if "BCP192" in output:
            pytest.skip("the Microsoft Graph Bicep extension cannot be restored here (no registry access)")
        assert result.returncode == 0, f"{' '.join(command[:3])} failed:\n{output[-4000:]}"


# --- agents as callers (app roles) --------------------------------------------------------------


def test_the_api_app_defines_an_application_only_app_role_and_assigns_it_to_listed_agents() -> None:
    entra = code(ENTRA_APP_BICEP)
    roles = bicep_block(entra, "appRoles: [")
    assert "value: toolsExecuteAllRole" in roles and "isEnabled: true" in roles
    assert re.search(r"allowedMemberTypes:\s*\[\s*'Application'\s*\]", roles), "the role is for applications only"
    assert "var toolsExecuteAllRole = 'Tools.Execute.All'" in entra
    assert re.search(r"^param agentServicePrincipalIds array = \[\]$", entra, re.MULTILINE)
    assignment = bicep_block(entra, "resource agentRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0'")
    assert "for agent in agentServicePrincipalIds" in assignment
    assert "appRoleId: toolsExecuteAllRoleId" in assignment and "resourceId: servicePrincipal.id" in assignment
    main = code(MAIN_BICEP)
    assert re.search(r"^param agentServicePrincipalIds array = \[\]$", main, re.MULTILINE)
    assert re.search(r"^param agentClientIds array = \[\]$", main, re.MULTILINE)
    assert "agentServicePrincipalIds: agentServicePrincipalIds" in bicep_block(main, "module entraApp")
    # Agents join the server's allow-list, never the delegated scope's pre-authorization.
    assert "agentClientIds" not in bicep_block(main, "module entraApp")


def test_the_app_roles_reach_mcp_app_roles() -> None:
    settings = code(APP_SETTINGS_BICEP)
    assert re.search(r"MCP_APP_ROLES:\s*join\(appRoles,\s*','\)", settings)
    assert "appRoles: entraApp.outputs.appRoles" in bicep_block(code(MAIN_BICEP), "module appSettings")
    assert re.search(r"^output appRoles array = \[toolsExecuteAllRole\]$", code(ENTRA_APP_BICEP), re.MULTILINE)
    assert "MCP_APP_ROLES" in KNOWN_SETTINGS


def test_the_signing_key_is_generated_once_by_azd_and_kept() -> None:
    # A key new on every deployment would strand every dynamically registered client and consent cookie.
    from shared.settings import decode_key

    main = code(MAIN_BICEP)
    declaration = re.search(r"@metadata\(\{\s*azd:\s*\{\s*type:\s*'generate'\s*config:\s*\{\s*length:\s*(\d+)"
                            r"\s*noSpecial:\s*true\s*\}\s*\}\s*\}\)\s*@description\([^\n]*\)\s*"
                            r"param requestStateKey string$", main, re.MULTILINE)
    assert declaration, "requestStateKey must be azd-generated (no Bicep default)"
    length = int(declaration.group(1))
    assert length % 4 == 0 and len(decode_key("A" * length)) >= 32  # letters and digits are valid base64
    assert "newGuid(" not in main
