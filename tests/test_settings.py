"""Settings: read once at start-up, validated, and every problem named by its setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import (
    DEFAULT_AUTHORITY_HOST,
    REQUIRED_SETTINGS,
    SETTING_NAMES,
    Settings,
    SettingsError,
    is_loopback_host,
    load_settings,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
VSCODE = "aebc6443-996d-45c2-90f0-388ff96faa56"
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def base_env(**overrides: str) -> dict[str, str]:
    env = {"ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT, "ENTRA_ALLOWED_CLIENT_IDS": VSCODE}
    env.update(overrides)
    return env


def problems_for(env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    # The message names every offending setting, so an operator sees all of them at once.
    for name in caught.value.problems:
        assert name in str(caught.value)
    return caught.value.problems


# -- required settings -----------------------------------------------------------------------------


def test_minimal_settings_and_defaults() -> None:
    s = load_settings(base_env())
    assert s.tenant_id == TENANT
    assert s.client_id == CLIENT
    assert s.allowed_client_ids == frozenset({VSCODE})
    assert s.app_id_uri == f"api://{CLIENT}"
    assert s.required_scopes == ("user_impersonation",)
    assert s.full_scopes == (f"api://{CLIENT}/user_impersonation",)
    assert s.authority_host == DEFAULT_AUTHORITY_HOST
    assert s.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert s.authorization_server == s.issuer
    assert s.openid_configuration_url == f"https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
    assert s.public_base_url is None
    assert s.allowed_origins == frozenset()
    assert s.website_hostname is None
    assert s.obo.mode is None
    assert s.graph_api_base_url == "https://graph.microsoft.com/v1.0"
    assert s.app_roles == ()  # app-only tokens are refused unless MCP_APP_ROLES names a role


@pytest.mark.parametrize("name", REQUIRED_SETTINGS)
def test_each_required_setting_missing_is_named(name: str) -> None:
    env = base_env()
    del env[name]
    assert list(problems_for(env)) == [name]


@pytest.mark.parametrize("name", REQUIRED_SETTINGS)
def test_blank_required_setting_counts_as_missing(name: str) -> None:
    assert name in problems_for(base_env(**{name: "   "}))


def test_all_missing_settings_are_named_at_once() -> None:
    problems = problems_for({})
    assert set(problems) == set(REQUIRED_SETTINGS)
    problems = problems_for({"ENTRA_TENANT_ID": TENANT, "AZURE_AUTHORITY_HOST": "http://x"})
    assert set(problems) == {"ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS", "AZURE_AUTHORITY_HOST"}


def test_allowed_client_ids_with_only_separators_is_refused() -> None:
    # "," is not empty text, but it allows no client at all: the app would refuse everyone.
    assert "ENTRA_ALLOWED_CLIENT_IDS" in problems_for(base_env(ENTRA_ALLOWED_CLIENT_IDS=" , ,"))


@pytest.mark.parametrize("name", ["ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS"])
@pytest.mark.parametrize(
    "value", ["not-a-guid", "1234", "72f988bf-86f1-41af-91ab-2d7cd011db4", "zzzzzzzz-86f1-41af-91ab-2d7cd011db47"]
)
def test_malformed_guids_are_refused(name: str, value: str) -> None:
    assert name in problems_for(base_env(**{name: value}))


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", "contoso.onmicrosoft.com"])
def test_multi_tenant_or_named_tenants_are_refused(tenant: str) -> None:
    problems = problems_for(base_env(ENTRA_TENANT_ID=tenant))
    assert "GUID" in problems["ENTRA_TENANT_ID"]


def test_guids_are_normalised_to_lower_case() -> None:
    s = load_settings(base_env(ENTRA_TENANT_ID=TENANT.upper(), ENTRA_CLIENT_ID=CLIENT.upper(),
                               ENTRA_ALLOWED_CLIENT_IDS=VSCODE.upper()))
    assert (s.tenant_id, s.client_id) == (TENANT, CLIENT)
    assert s.allowed_client_ids == frozenset({VSCODE})
    assert s.issuer.endswith(f"/{TENANT}/v2.0")


def test_allowed_client_ids_comma_or_space_separated() -> None:
    s = load_settings(base_env(ENTRA_ALLOWED_CLIENT_IDS=f" {VSCODE} ,{CLI}  "))
    assert s.allowed_client_ids == frozenset({VSCODE, CLI})
    s = load_settings(base_env(ENTRA_ALLOWED_CLIENT_IDS=f"{VSCODE} {CLI}"))
    assert s.allowed_client_ids == frozenset({VSCODE, CLI})
    problems = problems_for(base_env(ENTRA_ALLOWED_CLIENT_IDS=f"{VSCODE},vscode"))
    assert "vscode" in problems["ENTRA_ALLOWED_CLIENT_IDS"]


# -- ENTRA_APP_ID_URI and scopes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [f"api://{CLIENT}", f"api://{TENANT}/mcp-server", "https://mcp.contoso.com/mcp", "https://mcp.contoso.com"],
)
def test_app_id_uri_forms(uri: str) -> None:
    s = load_settings(base_env(ENTRA_APP_ID_URI=uri))
    assert s.app_id_uri == uri
    assert s.full_scopes == (f"{uri}/user_impersonation",)
    assert s.full_scope("Files.Read") == f"{uri}/Files.Read"


@pytest.mark.parametrize(
    "uri",
    [
        f"api://{CLIENT}/",  # identifier URIs cannot end with "/" (and the scope would get "//")
        "https://mcp.contoso.com/mcp/",
        "http://mcp.contoso.com/mcp",
        "urn:contoso:mcp",
        "api://",
        "mcp.contoso.com",
        "https://mcp.contoso.com/mcp?x=1",
        "https://mcp.contoso.com/mcp#frag",
    ],
)
def test_bad_app_id_uri_is_refused(uri: str) -> None:
    assert "ENTRA_APP_ID_URI" in problems_for(base_env(ENTRA_APP_ID_URI=uri))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user_impersonation", ("user_impersonation",)),
        ("user_impersonation,Files.Read", ("user_impersonation", "Files.Read")),
        ("user_impersonation Files.Read", ("user_impersonation", "Files.Read")),
        (" mcp.access ,  Tools-Invoke ", ("mcp.access", "Tools-Invoke")),
        ("", ("user_impersonation",)),
    ],
)
def test_required_scopes_parsing(value: str, expected: tuple[str, ...]) -> None:
    s = load_settings(base_env(MCP_REQUIRED_SCOPES=value))
    assert s.required_scopes == expected
    assert s.full_scopes == tuple(f"api://{CLIENT}/{scope}" for scope in expected)


@pytest.mark.parametrize(
    "value",
    [
        f"api://{CLIENT}/user_impersonation",  # a full name: scopes are short names
        "https://graph.microsoft.com/User.Read",
        'user"impersonation',
        "scope\\x",
        "x" * 101,
        "user_impersonation,caf\u00e9",
    ],
)
def test_bad_required_scopes_are_refused(value: str) -> None:
    assert "MCP_REQUIRED_SCOPES" in problems_for(base_env(MCP_REQUIRED_SCOPES=value))


# -- app roles that admit applications (MCP_APP_ROLES) ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tools.Execute.All", ("Tools.Execute.All",)),
        ("Tools.Execute.All,Tools.Read.All", ("Tools.Execute.All", "Tools.Read.All")),
        (" Tools.Execute.All  Tools.Read.All ,", ("Tools.Execute.All", "Tools.Read.All")),
        ("A,B,A", ("A", "B")),  # duplicates once, order kept
        ("mcp:invoke,Agent_Tools-1", ("mcp:invoke", "Agent_Tools-1")),
        ("", ()),
    ],
)
def test_app_roles_parsing(value: str, expected: tuple[str, ...]) -> None:
    s = load_settings(base_env(MCP_APP_ROLES=value))
    assert s.app_roles == expected
    # App roles are never delegated scopes: the scopes a client is told to request stay the delegated ones.
    assert s.required_scopes == ("user_impersonation",) and s.full_scopes == (f"api://{CLIENT}/user_impersonation",)


@pytest.mark.parametrize(
    "value",
    [
        'Tools"Execute',
        "Tools\\Execute",
        "Tools=Execute",
        "x" * 121,
        "Tools.Execute.All,caf\u00e9",
        f"api://{CLIENT}/Tools.Execute.All",
        ",",
        " , ",
    ],
)
def test_bad_app_roles_are_refused(value: str) -> None:
    problems = problems_for(base_env(MCP_APP_ROLES=value))
    assert set(problems) == {"MCP_APP_ROLES"}, problems


def test_app_roles_problem_is_named_with_the_others() -> None:
    problems = problems_for(base_env(MCP_APP_ROLES="a=b", MCP_REQUIRED_SCOPES="a b\"c"))
    assert {"MCP_APP_ROLES", "MCP_REQUIRED_SCOPES"} <= set(problems)


def test_app_roles_longest_allowed() -> None:
    assert load_settings(base_env(MCP_APP_ROLES="x" * 120)).app_roles == ("x" * 120,)


# -- public base URL, origins, authority --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://mcp.contoso.com", "https://mcp.contoso.com"),
        ("https://MCP.Contoso.com/", "https://mcp.contoso.com"),
        ("https://mcp.contoso.com:8443", "https://mcp.contoso.com:8443"),
        ("http://localhost:7071", "http://localhost:7071"),
        ("http://127.0.0.1:7071", "http://127.0.0.1:7071"),
        ("http://[::1]:7071", "http://[::1]:7071"),
    ],
)
def test_public_base_url_accepted(value: str, expected: str) -> None:
    assert load_settings(base_env(MCP_PUBLIC_BASE_URL=value)).public_base_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "http://mcp.contoso.com",  # plain http only for loopback
        "https://mcp.contoso.com/mcp",  # an origin, not the endpoint URL
        "https://mcp.contoso.com/api/",
        "https://mcp.contoso.com?x=1",
        "ftp://mcp.contoso.com",
        "mcp.contoso.com",
        "https://",
        "https://user@localhost.evil.example",
    ],
)
def test_public_base_url_refused(value: str) -> None:
    assert "MCP_PUBLIC_BASE_URL" in problems_for(base_env(MCP_PUBLIC_BASE_URL=value))


def test_allowed_origins() -> None:
    s = load_settings(base_env(MCP_ALLOWED_ORIGINS="http://localhost:6274, https://Inspector.Contoso.com/,http://x.test"))
    # Extra browser origins may be plain http (the MCP Inspector runs on http://localhost:6274).
    assert s.allowed_origins == frozenset({"http://localhost:6274", "https://inspector.contoso.com", "http://x.test"})
    for bad in ("https://contoso.com/path", "*", "null", "localhost:6274"):
        assert "MCP_ALLOWED_ORIGINS" in problems_for(base_env(MCP_ALLOWED_ORIGINS=f"http://localhost:6274,{bad}"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://login.microsoftonline.us", "https://login.microsoftonline.us"),
        ("https://login.chinacloudapi.cn/", "https://login.chinacloudapi.cn"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_authority_host_accepted(value: str, expected: str) -> None:
    s = load_settings(base_env(AZURE_AUTHORITY_HOST=value))
    assert s.authority_host == expected
    assert s.issuer == f"{expected}/{TENANT}/v2.0"
    assert s.openid_configuration_url == f"{expected}/{TENANT}/v2.0/.well-known/openid-configuration"


@pytest.mark.parametrize(
    "value",
    ["http://login.microsoftonline.com", "http://127.0.0.1:8443", "https://login.microsoftonline.com/common",
     "login.microsoftonline.com", "https://login.microsoftonline.com?x=1"],
)
def test_authority_host_must_be_an_https_origin(value: str) -> None:
    assert "AZURE_AUTHORITY_HOST" in problems_for(base_env(AZURE_AUTHORITY_HOST=value))


def test_website_hostname_is_read_and_lower_cased() -> None:
    assert load_settings(base_env(WEBSITE_HOSTNAME="My-App.AzureWebsites.net")).website_hostname == (
        "my-app.azurewebsites.net"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True), ("localhost:7071", True), ("LOCALHOST:7071", True), ("127.0.0.1", True),
        ("127.0.0.1:7071", True), ("127.5.6.7:80", True), ("[::1]", True), ("[::1]:7071", True),
        ("app.localhost:7071", True),
        ("example.com", False), ("10.0.0.1:80", False), ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False), ("[::2]:80", False), ("", False),
        # Not host syntax at all: must never be taken for loopback (it would end up in URLs we publish).
        ("127.0.0.1:1@evil.example", False), ("localhost:7071/evil", False), ("localhost:abc", False),
        ('localhost"', False), ("localhost\r\nX: y", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- on-behalf-of credentials -------------------------------------------------------------------------


def test_obo_modes(tmp_path: Path) -> None:
    mi = "99999999-8888-7777-6666-555555555555"
    assert load_settings(base_env(OBO_MANAGED_IDENTITY_CLIENT_ID=mi)).obo.mode == "managed_identity"
    assert load_settings(base_env(OBO_CLIENT_SECRET="s3cr3t-value")).obo.mode == "client_secret"
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    s = load_settings(base_env(OBO_CLIENT_CERTIFICATE_PATH=str(cert), OBO_CLIENT_CERTIFICATE_PASSWORD="pw"))
    assert s.obo.mode == "certificate"
    assert s.obo.certificate_password == "pw"
    assert "OBO_MANAGED_IDENTITY_CLIENT_ID" in problems_for(base_env(OBO_MANAGED_IDENTITY_CLIENT_ID="my-identity"))


@pytest.mark.parametrize(
    "names",
    [
        ("OBO_MANAGED_IDENTITY_CLIENT_ID", "OBO_CLIENT_SECRET"),
        ("OBO_MANAGED_IDENTITY_CLIENT_ID", "OBO_CLIENT_CERTIFICATE_PATH"),
        ("OBO_CLIENT_CERTIFICATE_PATH", "OBO_CLIENT_SECRET"),
    ],
)
def test_obo_modes_are_mutually_exclusive(names: tuple[str, ...], tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    values = {
        "OBO_MANAGED_IDENTITY_CLIENT_ID": "99999999-8888-7777-6666-555555555555",
        "OBO_CLIENT_CERTIFICATE_PATH": str(cert),
        "OBO_CLIENT_SECRET": "s3cr3t-value",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(base_env(**{n: values[n] for n in names}))
    message = str(caught.value)
    assert all(n in message for n in names)
    assert "s3cr3t-value" not in message


def test_certificate_path_must_exist(tmp_path: Path) -> None:
    problems = problems_for(base_env(OBO_CLIENT_CERTIFICATE_PATH=str(tmp_path / "missing.pfx")))
    assert "OBO_CLIENT_CERTIFICATE_PATH" in problems
    # A directory is not a certificate file either.
    assert "OBO_CLIENT_CERTIFICATE_PATH" in problems_for(base_env(OBO_CLIENT_CERTIFICATE_PATH=str(tmp_path)))


def test_certificate_password_without_path_is_refused() -> None:
    problems = problems_for(base_env(OBO_CLIENT_CERTIFICATE_PASSWORD="hunter2-password"))
    assert "OBO_CLIENT_CERTIFICATE_PASSWORD" in problems
    assert "hunter2-password" not in str(problems)


def test_graph_base_url_must_be_https() -> None:
    assert "GRAPH_API_BASE_URL" in problems_for(base_env(GRAPH_API_BASE_URL="http://graph.microsoft.com/v1.0"))
    s = load_settings(base_env(GRAPH_API_BASE_URL="https://graph.microsoft.us/v1.0/"))
    assert s.graph_api_base_url == "https://graph.microsoft.us/v1.0"


def test_repr_never_shows_a_secret(tmp_path: Path) -> None:
    cert = tmp_path / "c.pfx"
    cert.write_text("x")
    secret, password = "SECRET-do-not-log-1", "PASSWORD-do-not-log-2"
    for env in (base_env(OBO_CLIENT_SECRET=secret),
                base_env(OBO_CLIENT_CERTIFICATE_PATH=str(cert), OBO_CLIENT_CERTIFICATE_PASSWORD=password)):
        s = load_settings(env)
        for text in (repr(s), str(s), repr(s.obo), str(s.obo), f"{s}", f"{s.obo!r}"):
            assert secret not in text
            assert password not in text
        assert "mode=" in repr(s.obo)


def test_settings_are_immutable() -> None:
    s = load_settings(base_env())
    with pytest.raises(AttributeError):
        s.tenant_id = "x"  # type: ignore[misc]
    assert isinstance(s, Settings)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in base_env(ENTRA_APP_ID_URI="https://mcp.contoso.com/mcp").items():
        monkeypatch.setenv(name, value)
    assert load_settings().app_id_uri == "https://mcp.contoso.com/mcp"


def test_setting_names_vocabulary() -> None:
    assert "AZURE_CLIENT_ID" not in SETTING_NAMES  # azure-identity reads it for the managed identity
    assert set(REQUIRED_SETTINGS) == {"ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS"}
    assert "MCP_APP_ROLES" in SETTING_NAMES


# -- start-up ---------------------------------------------------------------------------------------


def _import_function_app(env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTRA_", "MCP_", "OBO_", "AZURE_"))}
    env.update(base_env(AZURE_AUTHORITY_HOST="https://127.0.0.1:9"))
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    code = (
        "import sys\n"
        "from shared.settings import SettingsError\n"
        "try:\n"
        "    import function_app\n"
        "except SettingsError as exc:\n"
        "    print('SETTINGS-ERROR', sorted(exc.problems))\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
        "print('IMPORTED', 'requests' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_function_app_import_fails_naming_the_missing_setting() -> None:
    result = _import_function_app({"ENTRA_CLIENT_ID": None})
    assert result.returncode == 3, result.stderr
    assert "SETTINGS-ERROR ['ENTRA_CLIENT_ID']" in result.stdout
    assert "ENTRA_CLIENT_ID: is required" in result.stdout


def test_function_app_imports_with_valid_settings_without_network_or_requests() -> None:
    # Start-up neither fetches keys (the authority here is unreachable) nor loads requests.
    result = _import_function_app({})
    assert result.returncode == 0, result.stderr
    assert "IMPORTED False" in result.stdout


@pytest.mark.parametrize("name", ["ENTRA_TENANT_ID", "ENTRA_CLIENT_ID"])
def test_the_sample_placeholder_guid_is_refused(app_env: dict[str, str], name: str) -> None:
    env = {**app_env, name: "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.problems == {name: "is still the placeholder from local.settings.sample.json"}
