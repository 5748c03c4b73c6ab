"""Application settings: read once at start-up, validated, then immutable.

Every setting name used anywhere in the project (code, ``local.settings.sample.json``,
Bicep app settings, README) is declared in :data:`SETTING_NAMES`, so a drift check can
compare the vocabularies.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_REQUIRED_SCOPES = ("user_impersonation",)
DEFAULT_GRAPH_API_BASE_URL = "https://graph.microsoft.com/v1.0"
# The MCP clients' redirect URIs the sign-in bridge returns sign-ins to (each client must also list the one it
# uses). Loopback entries carry no port: any port the client picks is accepted (RFC 8252). Entra never sees
# these: it returns to the bridge's own callback (shared/bridge/binding.py says why).
DEFAULT_BRIDGE_REDIRECT_URIS = (
    "http://127.0.0.1/",
    "http://127.0.0.1/callback",
    "http://localhost/callback",
    "http://localhost/oauth/callback",
    "http://127.0.0.1/oauth/callback",
    "https://vscode.dev/redirect",
    "https://claude.ai/api/mcp/auth_callback",
)
# Hosts whose client ID metadata documents the bridge fetches: VS Code's and Claude's.
DEFAULT_BRIDGE_CLIENT_METADATA_HOSTS = ("vscode.dev", "claude.ai")

REQUIRED_SETTINGS = ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "ENTRA_ALLOWED_CLIENT_IDS")
OPTIONAL_SETTINGS = (
    "ENTRA_APP_ID_URI",
    "MCP_REQUIRED_SCOPES",
    "MCP_APP_ROLES",
    "MCP_PUBLIC_BASE_URL",
    "MCP_ALLOWED_ORIGINS",
    "AZURE_AUTHORITY_HOST",
    "OBO_MANAGED_IDENTITY_CLIENT_ID",
    "OBO_CLIENT_CERTIFICATE_PATH",
    "OBO_CLIENT_CERTIFICATE_PASSWORD",
    "OBO_CLIENT_SECRET",
    "GRAPH_API_BASE_URL",
    "MCP_REQUEST_STATE_KEY",
    "ENTRA_BRIDGE_CLIENT_ID",
    "MCP_BRIDGE_REDIRECT_URIS",
    "MCP_BRIDGE_CLIENT_METADATA_HOSTS",
    "MCP_BRIDGE_DYNAMIC_REGISTRATION",
)
SETTING_NAMES = REQUIRED_SETTINGS + OPTIONAL_SETTINGS

_SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
# An Entra app role value (the roles claim): no spaces, at most 120 characters; kept to characters that need no
# quoting in a challenge's error_description or a log line.
_ROLE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
_APP_ID_URI_RE = re.compile(r"(api|https)://[A-Za-z0-9._~:/-]+")
_PLACEHOLDER_GUID = "00000000-0000-0000-0000-000000000000"
# The signing key behind requestState and the sign-in bridge: HMAC-SHA256 wants at least 32 bytes.
MIN_KEY_BYTES = 32
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


class SettingsError(ValueError):
    """One or more settings are missing or malformed.

    ``problems`` maps each offending setting name to what is wrong with it, so the
    start-up error names every setting that needs fixing at once.
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        lines = [f"  {name}: {why}" for name, why in self.problems.items()]
        super().__init__("Invalid application settings:\n" + "\n".join(lines))


@dataclass(frozen=True)
class OboCredentialSettings:
    """How this server proves itself to Entra for on-behalf-of (at most one mode is set)."""

    managed_identity_client_id: str | None = None
    certificate_path: str | None = None
    certificate_password: str | None = None
    client_secret: str | None = None

    @property
    def mode(self) -> str | None:
        if self.managed_identity_client_id:
            return "managed_identity"
        if self.certificate_path:
            return "certificate"
        if self.client_secret:
            return "client_secret"
        return None

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr().
        return f"OboCredentialSettings(mode={self.mode!r})"


@dataclass(frozen=True)
class BridgeSettings:
    """The sign-in bridge (``shared.bridge``): on when ``client_id`` (ENTRA_BRIDGE_CLIENT_ID) is set."""

    client_id: str | None = None
    redirect_uris: tuple[str, ...] = DEFAULT_BRIDGE_REDIRECT_URIS
    # host or host:port, lower-case
    client_metadata_hosts: frozenset[str] = frozenset(DEFAULT_BRIDGE_CLIENT_METADATA_HOSTS)
    dynamic_registration: bool = True

    @property
    def enabled(self) -> bool:
        return self.client_id is not None


@dataclass(frozen=True)
class Settings:
    tenant_id: str
    client_id: str
    allowed_client_ids: frozenset[str]
    app_id_uri: str
    required_scopes: tuple[str, ...]
    public_base_url: str | None
    allowed_origins: frozenset[str]
    authority_host: str
    website_hostname: str | None = None
    obo: OboCredentialSettings = OboCredentialSettings()
    graph_api_base_url: str = DEFAULT_GRAPH_API_BASE_URL
    # HMAC key for MRTR requestState, shared by all instances; None: a per-process random key.
    request_state_key: bytes | None = field(default=None, repr=False)
    bridge: BridgeSettings = BridgeSettings()
    # MCP_APP_ROLES: app roles that admit an application calling as itself (app-only token); empty: none is.
    app_roles: tuple[str, ...] = ()

    @property
    def issuer(self) -> str:
        """The v2 issuer Entra writes into this tenant's access tokens."""
        return f"{self.authority_host}/{self.tenant_id}/v2.0"

    @property
    def public_origin(self) -> str | None:
        """This app's configured public origin: MCP_PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME in Azure.

        None when neither is set (local development: the request's own loopback origin is used instead).
        """
        if self.public_base_url:
            return self.public_base_url
        return f"https://{self.website_hostname}" if self.website_hostname else None

    @property
    def authorization_server(self) -> str:
        return self.issuer

    @property
    def openid_configuration_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def full_scopes(self) -> tuple[str, ...]:
        return tuple(self.full_scope(s) for s in self.required_scopes)

    def full_scope(self, scope: str) -> str:
        """Short scope name -> the full name a client must request (Entra resolves a bare short name to Graph)."""
        return f"{self.app_id_uri}/{scope}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise :class:`SettingsError` naming each bad one."""
    env = os.environ if env is None else env
    problems: dict[str, str] = {}

    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    for name in REQUIRED_SETTINGS:
        if not get(name):
            problems[name] = "is required but not set"

    # Entra tenant names like "common" or "organizations" would accept tokens from any
    # tenant, so only a concrete tenant GUID is allowed.
    tenant_id = _guid(get("ENTRA_TENANT_ID"), "ENTRA_TENANT_ID", problems)
    client_id = _guid(get("ENTRA_CLIENT_ID"), "ENTRA_CLIENT_ID", problems)
    for name, value in (("ENTRA_TENANT_ID", tenant_id), ("ENTRA_CLIENT_ID", client_id)):
        if value == _PLACEHOLDER_GUID:
            problems[name] = "is still the placeholder from local.settings.sample.json"

    allowed: set[str] = set()
    for item in _split(get("ENTRA_ALLOWED_CLIENT_IDS")):
        guid = _guid(item, "ENTRA_ALLOWED_CLIENT_IDS", problems)
        if guid:
            allowed.add(guid)
    if not allowed and get("ENTRA_ALLOWED_CLIENT_IDS"):
        # Only separators: an empty allow-list would silently refuse every caller.
        problems.setdefault("ENTRA_ALLOWED_CLIENT_IDS", "lists no client ID")

    app_id_uri = get("ENTRA_APP_ID_URI") or (f"api://{client_id}" if client_id else "")
    if get("ENTRA_APP_ID_URI"):
        parts = urlsplit(app_id_uri)
        if parts.scheme not in ("api", "https") or not parts.netloc or app_id_uri.endswith("/"):
            problems["ENTRA_APP_ID_URI"] = (
                "must be an api:// or https:// Application ID URI without a trailing slash"
            )
        elif parts.query or parts.fragment:
            problems["ENTRA_APP_ID_URI"] = "must not contain a query or fragment"
        elif not _APP_ID_URI_RE.fullmatch(app_id_uri):
            # It ends up in scope names inside WWW-Authenticate and PRM: nothing that could
            # split or quote-break them, and no userinfo.
            problems["ENTRA_APP_ID_URI"] = "may contain only letters, digits and . _ ~ : / - (no spaces, quotes or @)"

    scopes = tuple(_split(get("MCP_REQUIRED_SCOPES"))) or DEFAULT_REQUIRED_SCOPES
    bad_scopes = [s for s in scopes if not _SCOPE_RE.match(s) or "/" in s]
    if bad_scopes:
        problems["MCP_REQUIRED_SCOPES"] = (
            f"must be short scope names such as user_impersonation (got {', '.join(bad_scopes)})"
        )

    app_roles = tuple(dict.fromkeys(_split(get("MCP_APP_ROLES"))))
    bad_roles = [r for r in app_roles if not _ROLE_RE.match(r)]
    if bad_roles:
        problems["MCP_APP_ROLES"] = (
            "must be app role values such as Tools.Execute.All: letters, digits and . _ : - only "
            f"(got {', '.join(r[:60] for r in bad_roles[:3])})"
        )
    elif not app_roles and get("MCP_APP_ROLES"):
        # Only separators: probably a mistake, and it would silently refuse every app-only caller.
        problems["MCP_APP_ROLES"] = "lists no app role (leave it unset to refuse app-only tokens)"

    public_base_url = None
    if get("MCP_PUBLIC_BASE_URL"):
        public_base_url = _origin(get("MCP_PUBLIC_BASE_URL"), "MCP_PUBLIC_BASE_URL", problems)

    origins: set[str] = set()
    for item in _split(get("MCP_ALLOWED_ORIGINS")):
        origin = _origin(item, "MCP_ALLOWED_ORIGINS", problems, https_only=False)
        if origin:
            origins.add(origin)

    authority = (get("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST).rstrip("/")
    parts = urlsplit(authority)
    if (parts.scheme != "https" or not parts.hostname or parts.path or parts.query or parts.fragment
            or "@" in parts.netloc):
        problems["AZURE_AUTHORITY_HOST"] = "must be an https:// origin such as https://login.microsoftonline.com"
    else:
        # The expected token issuer is built from it: compare like Entra writes it.
        authority = f"https://{parts.netloc.lower()}"

    obo = OboCredentialSettings(
        managed_identity_client_id=_guid(get("OBO_MANAGED_IDENTITY_CLIENT_ID"), "OBO_MANAGED_IDENTITY_CLIENT_ID",
                                         problems),
        certificate_path=get("OBO_CLIENT_CERTIFICATE_PATH") or None,
        certificate_password=get("OBO_CLIENT_CERTIFICATE_PASSWORD") or None,
        client_secret=get("OBO_CLIENT_SECRET") or None,
    )
    obo_modes = ("OBO_MANAGED_IDENTITY_CLIENT_ID", "OBO_CLIENT_CERTIFICATE_PATH", "OBO_CLIENT_SECRET")
    modes = [n for n in obo_modes if get(n)]
    if len(modes) > 1:
        problems[modes[1]] = f"set only one on-behalf-of credential; {' and '.join(modes)} are all set"
    if obo.certificate_path and not os.path.isfile(obo.certificate_path):
        problems["OBO_CLIENT_CERTIFICATE_PATH"] = "names a file that does not exist"
    if obo.certificate_password and not obo.certificate_path:
        problems["OBO_CLIENT_CERTIFICATE_PASSWORD"] = "is set without OBO_CLIENT_CERTIFICATE_PATH"

    graph = (get("GRAPH_API_BASE_URL") or DEFAULT_GRAPH_API_BASE_URL).rstrip("/")
    if urlsplit(graph).scheme != "https":
        problems["GRAPH_API_BASE_URL"] = "must be an https:// URL"

    request_state_key = None
    if get("MCP_REQUEST_STATE_KEY"):
        try:
            request_state_key = decode_key(get("MCP_REQUEST_STATE_KEY"))
        except ValueError as exc:
            problems["MCP_REQUEST_STATE_KEY"] = str(exc)

    bridge = _bridge_settings(get, allowed, in_azure=bool(get("WEBSITE_HOSTNAME")), problems=problems)

    if problems:
        raise SettingsError(problems)

    return Settings(
        tenant_id=tenant_id or "",
        client_id=client_id or "",
        allowed_client_ids=frozenset(allowed),
        app_id_uri=app_id_uri,
        required_scopes=scopes,
        public_base_url=public_base_url,
        allowed_origins=frozenset(origins),
        authority_host=authority,
        website_hostname=get("WEBSITE_HOSTNAME").lower() or None,
        obo=obo,
        graph_api_base_url=graph,
        request_state_key=request_state_key,
        bridge=bridge,
        app_roles=app_roles,
    )


def _bridge_settings(
    get: Callable[[str], str], allowed: set[str], *, in_azure: bool, problems: dict[str, str]
) -> BridgeSettings:
    client_id = _guid(get("ENTRA_BRIDGE_CLIENT_ID"), "ENTRA_BRIDGE_CLIENT_ID", problems)
    if client_id and allowed and client_id not in allowed:
        # Tokens the bridge obtains carry its client ID as azp: without it every bridged sign-in would end in 403.
        problems.setdefault("ENTRA_ALLOWED_CLIENT_IDS", f"must include ENTRA_BRIDGE_CLIENT_ID ({client_id}): "
                            "tokens obtained through the sign-in bridge carry it as the client app")

    redirect_uris: list[str] = []
    for item in _split(get("MCP_BRIDGE_REDIRECT_URIS")):
        parts = urlsplit(item)
        loopback = parts.scheme == "http" and is_loopback_host(parts.netloc)
        ok = (parts.scheme == "https" or loopback) and bool(parts.hostname) and not parts.fragment
        ok = ok and "@" not in parts.netloc and bool(_HOST_RE.fullmatch(parts.netloc))
        if not ok:
            problems.setdefault("MCP_BRIDGE_REDIRECT_URIS", "must be https:// URLs or http:// loopback URLs "
                                f"(http://127.0.0.1/callback), without a fragment (got {item[:80]!r})")
        redirect_uris.append(item)

    hosts: set[str] = set()
    for item in _split(get("MCP_BRIDGE_CLIENT_METADATA_HOSTS")):
        host = item.lower()
        if not _HOST_RE.fullmatch(host) or "/" in host:
            problems.setdefault("MCP_BRIDGE_CLIENT_METADATA_HOSTS",
                                f"must list host or host:port names (got {item[:80]!r})")
        elif is_loopback_host(host) and in_azure:
            # A loopback metadata host is for tests and local use: in Azure it would point at the app's own sandbox.
            problems.setdefault("MCP_BRIDGE_CLIENT_METADATA_HOSTS", f"{host} is a loopback host, allowed only locally")
        hosts.add(host)

    switch = get("MCP_BRIDGE_DYNAMIC_REGISTRATION").lower()
    if switch not in ("", "true", "false"):
        problems["MCP_BRIDGE_DYNAMIC_REGISTRATION"] = f"must be true or false (got {switch[:20]!r})"

    return BridgeSettings(
        client_id=client_id,
        redirect_uris=tuple(redirect_uris) or DEFAULT_BRIDGE_REDIRECT_URIS,
        client_metadata_hosts=frozenset(hosts) or frozenset(DEFAULT_BRIDGE_CLIENT_METADATA_HOSTS),
        dynamic_registration=switch != "false",
    )


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback IP literals (with or without a port)."""
    # The request's own origin is built from a loopback Host and published (challenge, PRM), so
    # anything that is not plain host[:port] syntax (userinfo, path, quotes) must not pass.
    if not _HOST_RE.fullmatch(host):
        return False
    name = _strip_port(host).strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is an IPv4 address in IPv6 clothing, not a loopback Host any client uses; Python 3.13
    # counts it as loopback, 3.11 does not. Refused on every version.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False
    return address.is_loopback


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _split(value: str) -> list[str]:
    return [item for item in re.split(r"[,\s]+", value) if item]


def _guid(value: str, name: str, problems: dict[str, str]) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        problems.setdefault(name, f"must be a GUID (got {value[:60]!r})")
        return None


def _origin(value: str, name: str, problems: dict[str, str], *, https_only: bool = True) -> str | None:
    parts = urlsplit(value.rstrip("/"))
    ok = parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.path and not parts.query
    # No userinfo, no fragment, a numeric port: the value must be exactly an origin.
    ok = ok and bool(_HOST_RE.fullmatch(parts.netloc)) and not parts.fragment
    if ok and parts.scheme == "http" and (https_only and not is_loopback_host(parts.netloc)):
        ok = False
    if not ok:
        need = "an https:// origin" if https_only else "an origin"
        problems.setdefault(name, f"must be {need} like https://mcp.contoso.com, without a path (got {value[:80]!r})")
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def decode_key(value: str) -> bytes:
    """Decode an ``MCP_REQUEST_STATE_KEY`` value (standard or URL-safe base64, at least 32 bytes)."""
    text = value.strip()
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ValueError("must be base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"must decode to at least {MIN_KEY_BYTES} bytes (e.g. openssl rand -base64 32)")
    return key
