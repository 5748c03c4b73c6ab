"""A local fake of Microsoft Entra ID for the test suite.

Auth is never switched off in tests. Instead this module plays the part of the identity provider: it serves the
tenant's OpenID discovery document and signing keys over real HTTPS on 127.0.0.1 (certificate from a throwaway
trustme CA) and mints real RS256-signed Entra-shaped access tokens. The product under test therefore runs its
production code path end to end: discovery, JWKS download over verified TLS, signature and claim checks.

All instances in a process share one throwaway CA. The product trusts it only through the standard environment
variables (``REQUESTS_CA_BUNDLE`` for requests, ``SSL_CERT_FILE`` for the ssl module / urllib / httpx), which
``conftest.py`` points at ``ca_bundle``.

Fault injection (503, connection reset, slow answers, a gate that holds key fetches in flight) and fetch
counters let tests prove caching, single-flight refresh and "keep the last good keys" behaviour.

The token endpoint serves the on-behalf-of grant, and, with the authorize endpoint, the interactive sign-in Entra
does for a public (mobile/desktop) client: authorization code with PKCE (S256), then refresh tokens. That lets a
sign-in bridge (an OAuth front door that forwards to Entra) be tested end to end, including Entra's redirect URI
matching, its 2026 ``resource`` rule (NOTES.md section 4) and its consent errors.

Nothing here is secure and nothing here should ever be imported by product code.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import re
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import jwt
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "AZURE_CLI_CLIENT_ID",
    "JWT_BEARER_GRANT",
    "VSCODE_CLIENT_ID",
    "FailMode",
    "FakeEntra",
    "aadsts_error",
    "b64url",
    "foreign_private_key",
    "rsa_key",
    "shared_ca",
]

# Well-known first-party public client IDs (see NOTES.md §3): VS Code and the Azure CLI.
VSCODE_CLIENT_ID = "aebc6443-996d-45c2-90f0-388ff96faa56"
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

FailMode = Literal["503", "reset", "slow"]

# The OAuth 2.0 grant and client-assertion types of the on-behalf-of request (RFC 7523).
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_BEARER_CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Scopes MSAL adds to every request; they name no resource.
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# Microsoft Graph's app ID: Entra resolves a scope without a resource prefix ("user_impersonation") to Graph.
_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Entra's loopback rule for public clients: for these http origins the port is ignored when matching redirect URIs
# (native apps listen on whatever port is free), but scheme, host and path must still match exactly. The lookahead
# stops look-alikes such as http://localhost.evil.example or http://127.0.0.1@evil.example from counting.
_LOOPBACK_REDIRECT = re.compile(r"^(http://(?:localhost|127\.0\.0\.1|\[::1\]))(?::\d+)?(?=[/?#]|$)")
# An S256 code challenge is BASE64URL(SHA256(verifier)): always 43 characters.
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")

# Deterministic object IDs: tests can compute the expected `oid` for a user name without asking the fake.
_OID_NAMESPACE = uuid.UUID("6f0d4a52-3c55-4d0e-9a43-6c1f3f3b7a10")

# A stuck client or a forgotten hold() must never hang the suite: every socket operation and every gate wait
# is bounded.
_SOCKET_TIMEOUT_SECONDS = 10.0
_DEFAULT_HOLD_TIMEOUT_SECONDS = 30.0


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _json_segment(obj: Mapping[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


# --------------------------------------------------------------------------------------------------------------
# Keys. RSA-2048 generation costs tens of milliseconds each, and a suite may create many FakeEntra instances and
# rotate often, so keys come from a process-wide pool: instances start from pool[0] and rotate() takes the next
# pool entry that instance has not used yet. Two instances therefore share key material (and kids); tests that
# need a key no instance trusts use foreign_private_key().
# --------------------------------------------------------------------------------------------------------------
_key_pool: list[rsa.RSAPrivateKey] = []
_key_pool_lock = threading.Lock()
_foreign_key: rsa.RSAPrivateKey | None = None
_ca: trustme.CA | None = None


def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The pool key at ``index`` (generated on first use, then reused for the whole process)."""
    with _key_pool_lock:
        while len(_key_pool) <= index:
            _key_pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _key_pool[index]


def foreign_private_key() -> rsa.RSAPrivateKey:
    """An RSA key that no FakeEntra ever publishes: sign with it to forge tokens."""
    global _foreign_key
    with _key_pool_lock:
        if _foreign_key is None:
            _foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _foreign_key


def _shared_ca() -> trustme.CA:
    # One throwaway CA per process: the CA bundle the session puts in REQUESTS_CA_BUNDLE / SSL_CERT_FILE then also
    # trusts any extra FakeEntra a test starts, so product code reaches it through the same env-based trust.
    global _ca
    with _key_pool_lock:
        if _ca is None:
            _ca = trustme.CA(organization_name="FakeEntra throwaway test CA")
        return _ca


def shared_ca() -> trustme.CA:
    """The process-wide throwaway CA, for other fake HTTPS services (fake Graph) the product must trust too."""
    return _shared_ca()


def _public_numbers(key: rsa.RSAPrivateKey) -> rsa.RSAPublicNumbers:
    return key.public_key().public_numbers()


def _kid_for(key: rsa.RSAPrivateKey) -> str:
    # RFC 7638 JWK thumbprint: stable for a key, so the same pool key has the same kid in every instance.
    numbers = _public_numbers(key)
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}, separators=(",", ":")
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class _Key:
    """One signing key of the fake tenant, and whether its public half is currently published."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, published: bool = True) -> None:
        self.private_key = private_key
        self.kid = _kid_for(private_key)
        self.published = published

    def jwk(self, issuer: str) -> dict[str, Any]:
        numbers = _public_numbers(self.private_key)
        # Shape of a real Entra v2 key entry. Entra's x5t is the certificate thumbprint and equals the kid; we publish
        # no certificate (x5c), which validators that use n/e (PyJWT, MSAL) never need.
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            "issuer": issuer,
        }

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


# --------------------------------------------------------------------------------------------------------------
# HTTPS server
# --------------------------------------------------------------------------------------------------------------
class TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake in the per-connection thread.

    Wrapping the listening socket instead would run every handshake inside accept() on the single serving thread,
    so one silent client (or one that rejects our certificate) would stall all others.
    """

    daemon_threads = True  # never keep the interpreter alive for a stuck connection
    block_on_close = False

    def __init__(self, fake: Any, ssl_context: ssl.SSLContext,
                 handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        self.fake = fake  # the handler's view of the fake it serves (FakeEntra here, FakeGraph, ...)
        self.ssl_context = ssl_context
        super().__init__(("127.0.0.1", 0), handler or _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_SOCKET_TIMEOUT_SECONDS)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # failed handshake, e.g. a client that does not trust the throwaway CA: nothing to serve
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer (timeouts, cancelled fetches) are normal in fault tests; stay quiet for
        # those but keep tracebacks for real bugs in the fake.
        if isinstance(sys.exc_info()[1], OSError):
            return
        socketserver.BaseServer.handle_error(self, request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: TLSServer
    timeout = _SOCKET_TIMEOUT_SECONDS  # StreamRequestHandler applies it to the connection: reads never hang
    server_version = "FakeEntra/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest output is for test results

    def do_GET(self) -> None:
        self.server.fake._handle_get(self)

    def do_POST(self) -> None:
        # Read the body (bounded) so the client is not cut off mid-upload; the token endpoint parses it as a form.
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(min(length, 1 << 20)) if length else b""
        self.server.fake._handle_post(self)

    def send_json(
        self, status: int, body: Any, *, cache: bool = False, headers: Mapping[str, str] | None = None
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Entra lets clients cache discovery and keys for a day; mirror it so header-aware caches behave as in prod.
        self.send_header("Cache-Control", "max-age=86400, private" if cache else "no-store, no-cache")
        self.end_headers()
        self.wfile.write(payload)

    def send_html(self, status: int, page: str) -> None:
        payload = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store, no-cache")
        self.end_headers()
        self.wfile.write(payload)

    def send_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store, no-cache")
        self.end_headers()

    def abort_connection(self) -> None:
        """Close without answering, with an RST (SO_LINGER 0) so the client sees a reset, not a clean EOF."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --------------------------------------------------------------------------------------------------------------
# Interactive sign-in state
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _AuthCode:
    """What an authorization code is bound to, as Entra binds it."""

    client_id: str
    redirect_uri: str  # exactly as sent to the authorize endpoint (loopback port included)
    code_challenge: str
    full_scopes: tuple[str, ...]  # e.g. ("api://<api>/user_impersonation",)
    short_scopes: tuple[str, ...]  # e.g. ("user_impersonation",), what `scp` carries
    user: str
    offline_access: bool
    openid: bool
    nonce: str | None
    expires_at: float
    redeemed: bool = False


@dataclass
class _RefreshGrant:
    client_id: str
    user: str
    full_scopes: tuple[str, ...]
    short_scopes: tuple[str, ...]
    openid: bool
    revoked: bool = False


class _OAuthError(Exception):
    """An Entra error: sent as an error redirect from the authorize endpoint, or as JSON from the token endpoint."""

    def __init__(self, code: int, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.code, self.error, self.description, self.status = code, error, description, status

    def body(self) -> dict[str, Any]:
        return aadsts_error(self.code, self.error, self.description)

    def description_text(self) -> str:
        """The error_description Entra sends: "AADSTS<code>: <message> Trace ID: ..."."""
        return str(self.body()["error_description"])


# --------------------------------------------------------------------------------------------------------------
# The fake identity provider
# --------------------------------------------------------------------------------------------------------------
class FakeEntra:
    """A fake Entra ID tenant over HTTPS on 127.0.0.1, with a token minter and fault injection.

    Use as a context manager (or call start()/stop()). All public state changes are thread-safe: the server answers
    from its own threads while tests reconfigure it.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        api_client_id: str | None = None,
        allowed_client_id: str = VSCODE_CLIENT_ID,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.api_client_id = api_client_id or str(uuid.uuid4())  # the protected API's app ID = expected `aud`
        self.allowed_client_id = allowed_client_id  # the client app that asks for tokens (`azp`)
        self.app_id_uri = f"api://{self.api_client_id}"

        # Condition (not a bare Lock) so wait_for_fetches() can sleep until the server counts a request.
        self._cond = threading.Condition()
        self._keys: list[_Key] = [_Key(rsa_key(0))]
        self._next_pool_index = 1
        self._signing_kid = self._keys[0].kid
        self._jwks_fetches = 0
        self._discovery_fetches = 0
        self._fail_mode: FailMode | None = None
        self._delay_seconds = 0.0
        self._gate = threading.Event()
        self._gate.set()  # open: fetches pass straight through until hold()
        self._hold_discovery = False
        self.hold_timeout = _DEFAULT_HOLD_TIMEOUT_SECONDS
        # Served verbatim instead of the real documents when set (dict/list -> JSON, bytes -> raw body), for tests of
        # malformed or surprising provider answers.
        self.jwks_override: Any = None
        self.discovery_override: Any = None

        # Token endpoint (on-behalf-of). Every POST's form fields are recorded; canned answers are served first (FIFO),
        # then the endpoint behaves like Entra: it checks the user assertion and issues a downstream token.
        self._token_requests: list[dict[str, str]] = []
        self._token_responses: list[tuple[int, Any, dict[str, str], float]] = []
        self._token_delay_seconds = 0.0
        self._consent_required: set[str] = set()
        self._issued_obo_tokens: list[str] = []
        self.expected_client_secret: str | None = None  # when set, client_secret requests must match it
        self.obo_token_lifetime = 3600

        # Interactive sign-in for public clients (authorize endpoint, authorization_code and refresh_token grants).
        self._reset_sign_in()

        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.ca_bundle = ""
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> FakeEntra:
        if self._server is not None:
            return self
        ca = _shared_ca()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="fake-entra-")
        bundle = Path(self._tmpdir.name) / "fake-entra-ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self.ca_bundle = str(bundle)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        server_cert.configure_cert(context)

        self._server = TLSServer(self, context)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() fast; serving threads are daemons so nothing outlives the test run.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-entra", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._gate.set()  # let any held request finish instead of waiting out hold_timeout
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> FakeEntra:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- addresses --------------------------------------------------------------------------------------------
    @property
    def authority(self) -> str:
        """The authority host, i.e. what AZURE_AUTHORITY_HOST is set to (no trailing slash)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0"

    @property
    def issuer_v1(self) -> str:
        # v1 tokens always name sts.windows.net, whatever host issued them.
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def discovery_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/authorize"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting only the throwaway CA (e.g. for PyJWKClient(ssl_context=...))."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    # ---- keys -------------------------------------------------------------------------------------------------
    @property
    def signing_kid(self) -> str:
        with self._cond:
            return self._signing_kid

    @property
    def published_kids(self) -> list[str]:
        with self._cond:
            return [k.kid for k in self._keys if k.published]

    def rotate(self) -> str:
        """Add a new key, publish it and sign with it from now on; the old keys stay published. Returns its kid."""
        with self._cond:
            key = _Key(rsa_key(self._next_pool_index))
            self._next_pool_index += 1
            self._keys.append(key)
            self._signing_kid = key.kid
            return key.kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key. It can still sign (mint(key=kid), or as signing key) to test revoked-key tokens."""
        self.publish(kid, False)

    def publish(self, kid: str, published: bool = True) -> None:
        with self._cond:
            self._key(kid).published = published

    def public_key_pem(self, kid: str | None = None) -> bytes:
        """PEM of a key's public half (default: the signing key); the classic HS256 key-confusion secret."""
        with self._cond:
            return self._key(kid or self._signing_kid).public_pem()

    def jwks(self) -> dict[str, Any]:
        """The key set as currently published."""
        with self._cond:
            return {"keys": [k.jwk(self.issuer) for k in self._keys if k.published]}

    def _key(self, kid: str) -> _Key:
        for key in self._keys:
            if key.kid == kid:
                return key
        raise KeyError(f"no key with kid {kid!r} in this FakeEntra")

    # ---- fault injection and counters ---------------------------------------------------------------------------
    @property
    def jwks_fetches(self) -> int:
        with self._cond:
            return self._jwks_fetches

    @property
    def discovery_fetches(self) -> int:
        with self._cond:
            return self._discovery_fetches

    @property
    def fail_mode(self) -> FailMode | None:
        with self._cond:
            return self._fail_mode

    @fail_mode.setter
    def fail_mode(self, mode: FailMode | None) -> None:
        if mode not in (None, "503", "reset", "slow"):
            raise ValueError(f"unknown fail_mode {mode!r}")
        with self._cond:
            self._fail_mode = mode

    @property
    def delay_seconds(self) -> float:
        with self._cond:
            return self._delay_seconds

    @delay_seconds.setter
    def delay_seconds(self, seconds: float) -> None:
        with self._cond:
            self._delay_seconds = float(seconds)

    def reset_counters(self) -> None:
        with self._cond:
            self._jwks_fetches = 0
            self._discovery_fetches = 0

    def hold(self, *, discovery: bool = False) -> None:
        """Block key fetches (and discovery fetches too if ``discovery``) in flight until release().

        Requests are counted when they arrive, before they wait, so a test can wait_for_fetches(1) and then check
        that concurrent callers did not start a second fetch (single-flight). Fault modes are applied after the gate,
        so a test may hold, set fail_mode, and release to make the in-flight fetch fail.
        """
        with self._cond:
            self._hold_discovery = discovery
            self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def wait_for_fetches(self, jwks: int = 0, discovery: int = 0, *, timeout: float = 5.0) -> bool:
        """Wait until at least this many key/discovery requests have arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._jwks_fetches >= jwks and self._discovery_fetches >= discovery, timeout=timeout
            )

    def reset(self, *, keys: bool = True) -> None:
        """Back to a clean state: no faults, no hold, no overrides, zero counters, and (``keys``) the initial key."""
        with self._cond:
            self._fail_mode = None
            self._delay_seconds = 0.0
            self._hold_discovery = False
            self.hold_timeout = _DEFAULT_HOLD_TIMEOUT_SECONDS
            self.jwks_override = None
            self.discovery_override = None
            self._jwks_fetches = 0
            self._discovery_fetches = 0
            self._token_requests = []
            self._token_responses = []
            self._token_delay_seconds = 0.0
            self._consent_required = set()
            self._issued_obo_tokens = []
            self.expected_client_secret = None
            self.obo_token_lifetime = 3600
            self._reset_sign_in()
            if keys:
                self._keys = [_Key(rsa_key(0))]
                self._next_pool_index = 1
                self._signing_kid = self._keys[0].kid
        self._gate.set()

    # ---- HTTP routes ------------------------------------------------------------------------------------------
    def discovery_document(self) -> dict[str, Any]:
        tenant_base = f"{self.authority}/{self.tenant_id}"
        # The subset of Entra's v2 openid-configuration a resource server or client library looks at. Like the real
        # one it has no code_challenge_methods_supported.
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.authorize_endpoint,
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": f"{tenant_base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{tenant_base}/oauth2/v2.0/logout",
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def _handle_get(self, handler: _Handler) -> None:
        path, _, query = handler.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"]:
            self._handle_authorize(handler, parts[0], query)
            return
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            endpoint = "discovery"
        elif len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"]:
            endpoint = "keys"
        else:
            handler.send_json(404, {"error": "not_found", "error_description": "FakeEntra: no such endpoint"})
            return
        tenant = parts[0]
        if tenant != self.tenant_id:
            # Real Entra answers an unknown tenant with 400 and AADSTS90002. We also refuse common/organizations,
            # which the product must never use for validation. Such requests are not counted.
            handler.send_json(400, _tenant_not_found(tenant))
            return

        with self._cond:
            if endpoint == "keys":
                self._jwks_fetches += 1
            else:
                self._discovery_fetches += 1
            held = endpoint == "keys" or self._hold_discovery
            hold_timeout = self.hold_timeout
            self._cond.notify_all()
        if held:
            self._gate.wait(timeout=hold_timeout)

        # Read fault settings after the gate so a held fetch sees changes made while it waited.
        with self._cond:
            mode, delay = self._fail_mode, self._delay_seconds
            override = self.jwks_override if endpoint == "keys" else self.discovery_override
        if mode == "503":
            handler.send_json(
                503,
                {
                    "error": "temporarily_unavailable",
                    "error_description": "FakeEntra: injected 503 (fail_mode='503')",
                    "error_codes": [90033],
                },
            )
            return
        if mode == "reset":
            handler.abort_connection()
            return
        if mode == "slow":
            time.sleep(delay)

        if override is not None:
            body = override
        elif endpoint == "keys":
            body = self.jwks()
        else:
            body = self.discovery_document()
        handler.send_json(200, body, cache=True)

    # ---- token endpoint (on-behalf-of) -----------------------------------------------------------------------------
    @property
    def token_requests(self) -> list[dict[str, str]]:
        """Form fields of every POST to the token endpoint so far, oldest first (copies)."""
        with self._cond:
            return [dict(r) for r in self._token_requests]

    @property
    def obo_calls(self) -> int:
        """How many on-behalf-of requests reached the token endpoint (answered or not)."""
        with self._cond:
            return sum(1 for r in self._token_requests if r.get("requested_token_use") == "on_behalf_of")

    @property
    def issued_obo_tokens(self) -> list[str]:
        """Every downstream access token this tenant issued through on-behalf-of."""
        with self._cond:
            return list(self._issued_obo_tokens)

    @property
    def token_delay_seconds(self) -> float:
        with self._cond:
            return self._token_delay_seconds

    @token_delay_seconds.setter
    def token_delay_seconds(self, seconds: float) -> None:
        """Delay every token-endpoint answer (a slow Entra); counted requests arrive before the delay."""
        with self._cond:
            self._token_delay_seconds = float(seconds)

    def queue_token_response(
        self, status: int, body: Any, *, headers: Mapping[str, str] | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        """Answer the next ``times`` token requests with this canned response (after ``delay`` seconds)."""
        with self._cond:
            self._token_responses.extend([(status, body, dict(headers or {}), delay)] * times)

    def require_consent(self, *scopes: str) -> None:
        """On-behalf-of requests for any of these scopes fail with AADSTS65001 until grant_consent()."""
        with self._cond:
            self._consent_required.update(scopes)

    def grant_consent(self, *scopes: str) -> None:
        with self._cond:
            self._consent_required.difference_update(scopes)

    def _handle_post(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            handler.send_json(404, {"error": "not_found", "error_description": "FakeEntra: no such endpoint"})
            return
        if parts[0] != self.tenant_id:
            handler.send_json(400, _tenant_not_found(parts[0]))
            return
        form = dict(parse_qsl(handler.body.decode("utf-8", "replace"), keep_blank_values=True))
        with self._cond:
            self._token_requests.append(form)
            canned = self._token_responses.pop(0) if self._token_responses else None
            delay = self._token_delay_seconds
            self._cond.notify_all()
        if delay:
            time.sleep(delay)
        if canned is not None:
            status, body, headers, canned_delay = canned
            time.sleep(canned_delay)
            handler.send_json(status, body, headers=headers)
            return
        grant_type = form.get("grant_type")
        if grant_type == JWT_BEARER_GRANT and form.get("requested_token_use") == "on_behalf_of":
            status, body = self._on_behalf_of(form)
        elif grant_type == "authorization_code":
            status, body = self._grant_response(self._redeem_code, form)
        elif grant_type == "refresh_token":
            status, body = self._grant_response(self._redeem_refresh_token, form)
        else:
            # Answer like Entra does for a grant it cannot serve.
            status, body = 400, {
                "error": "unsupported_grant_type",
                "error_description": "FakeEntra: only the on-behalf-of, authorization_code and refresh_token grants "
                "are implemented",
                "error_codes": [70003],
            }
        handler.send_json(status, body)

    def _on_behalf_of(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        if form.get("client_assertion_type") == JWT_BEARER_CLIENT_ASSERTION and form.get("client_assertion"):
            pass  # tests inspect the recorded assertion themselves
        elif "client_secret" in form:
            expected = self.expected_client_secret
            if expected is not None and not hmac.compare_digest(form["client_secret"], expected):
                return 401, aadsts_error(7000215, "invalid_client", "Invalid client secret provided.")
        else:
            return 401, aadsts_error(7000218, "invalid_client", "The request body must contain 'client_assertion' "
                                     "or 'client_secret'.")
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            key = self._key(header.get("kid", "")).private_key.public_key()
            user = jwt.decode(form["assertion"], key, algorithms=["RS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            return 400, aadsts_error(500133, "invalid_grant", "Assertion is not within its valid time range.")
        except (jwt.PyJWTError, KeyError):
            return 400, aadsts_error(50013, "invalid_grant", "Assertion failed signature validation.")
        if user.get("aud") != client_id:
            return 400, aadsts_error(50013, "invalid_grant", "Assertion audience does not match the Client app "
                                     "presenting the assertion.")
        scopes = [s for s in form.get("scope", "").split() if s not in _OIDC_SCOPES]
        resources = {s.rsplit("/", 1)[0] for s in scopes if "/" in s}
        if len(resources) != 1 or len(scopes) != len([s for s in scopes if "/" in s]):
            return 400, aadsts_error(70011, "invalid_scope", "The provided value for the input parameter 'scope' is "
                                     "not valid.")
        with self._cond:
            missing = self._consent_required.intersection(scopes)
            lifetime = self.obo_token_lifetime
        if missing:
            body = aadsts_error(65001, "invalid_grant", f"The user or administrator has not consented to use the "
                                f"application with ID '{client_id}'. Send an interactive authorization request for "
                                "this user and resource.", suberror="consent_required")
            return 400, body
        now = int(time.time())
        user_claims = {k: user[k] for k in ("oid", "tid", "name", "preferred_username") if k in user}
        access_token = self.sign({
            "aud": resources.pop(), "iss": self.issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "azp": client_id, "scp": " ".join(s.rsplit("/", 1)[1] for s in scopes), "idtyp": "user",
            "uti": b64url(uuid.uuid4().bytes)[:22], "ver": "2.0", **user_claims,
        })
        id_token = self.sign({
            "aud": client_id, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "sub": user.get("sub", ""), "ver": "2.0", **user_claims,
        })
        with self._cond:
            self._issued_obo_tokens.append(access_token)
        client_info = {"uid": user.get("oid", ""), "utid": user.get("tid", "")}
        return 200, {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            "refresh_token": "fake-refresh-" + b64url(uuid.uuid4().bytes),
            "id_token": id_token,
            "client_info": b64url(json.dumps(client_info).encode()),
        }

    # ---- interactive sign-in for public clients (authorize, authorization_code, refresh_token) -----------------
    def _reset_sign_in(self) -> None:
        """Default app registrations and no sign-in history. Called from __init__ and (under the lock) reset()."""
        # The protected API's app registration: identifier URIs (scope prefixes, allowed `resource` values) and the
        # short names of its delegated scopes. Plain attributes, so tests may assign or mutate them.
        self.identifier_uris: list[str] = [self.app_id_uri]
        self.api_scopes: set[str] = {"user_impersonation"}
        # The browser session: who is signed in when a client is sent to the authorize endpoint.
        self.signed_in_user = "alice"
        # Since 2026 Entra refuses a `resource` that is not one of the API's identifier URIs (NOTES.md section 4).
        self.enforce_resource_rule = True
        self.code_lifetime = 600  # seconds an authorization code stays redeemable (Entra: 10 minutes)
        self._public_clients: dict[str, tuple[str, ...]] = {}
        # api.preAuthorizedApplications. VS Code (which never shows a consent prompt, NOTES.md section 3) and the
        # client app this tenant mints tokens for are pre-authorized out of the box, as the product's infra does.
        self._pre_authorized: set[str] = {VSCODE_CLIENT_ID, self.allowed_client_id}
        self._user_consent: set[str] = set()
        self._authorize_requests: list[dict[str, str]] = []
        self._codes: dict[str, _AuthCode] = {}
        self._refresh_grants: dict[str, _RefreshGrant] = {}
        self._issued_codes = 0
        self._issued_sign_in_tokens: list[str] = []

    def add_public_client(self, client_id: str, redirect_uris: Iterable[str]) -> None:
        """Register a public (mobile/desktop) client app with its redirect URIs (replacing any earlier ones)."""
        with self._cond:
            self._public_clients[client_id] = tuple(redirect_uris)

    def pre_authorize(self, client_id: str) -> None:
        """List a client in the API's preAuthorizedApplications: it signs users in without a consent prompt."""
        with self._cond:
            self._pre_authorized.add(client_id)

    def grant_user_consent(self, client_id: str) -> None:
        """Record that the user (or an admin) consented to the API's scopes for this client."""
        with self._cond:
            self._user_consent.add(client_id)

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far (like revokeSignInSessions); later ones work again."""
        with self._cond:
            for grant in self._refresh_grants.values():
                grant.revoked = True

    @property
    def authorize_requests(self) -> list[dict[str, str]]:
        """Query parameters of every request to the authorize endpoint so far, oldest first (copies)."""
        with self._cond:
            return [dict(r) for r in self._authorize_requests]

    @property
    def issued_codes(self) -> int:
        """How many authorization codes the authorize endpoint handed out."""
        with self._cond:
            return self._issued_codes

    @property
    def issued_sign_in_tokens(self) -> list[str]:
        """Every access token issued through the authorization_code and refresh_token grants, oldest first."""
        with self._cond:
            return list(self._issued_sign_in_tokens)

    # authorize endpoint ----------------------------------------------------------------------------------------
    def _handle_authorize(self, handler: _Handler, tenant: str, query: str) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        with self._cond:
            self._authorize_requests.append(dict(params))
        if tenant != self.tenant_id:
            handler.send_html(400, _error_page(_tenant_not_found(tenant)["error_description"]))
            return
        # Until the redirect URI is known to belong to the client, Entra shows its own error page: redirecting an
        # error to an unverified URI would make the authorize endpoint an open redirector.
        try:
            redirect_uri = self._checked_redirect_uri(params)
        except _OAuthError as exc:
            handler.send_html(400, _error_page(exc.description_text()))
            return
        state = {"state": params["state"]} if "state" in params else {}
        try:
            code = self._issue_code(params, redirect_uri)
        except _OAuthError as exc:
            handler.send_redirect(_with_query(redirect_uri, {
                "error": exc.error, "error_description": exc.description_text(), **state,
            }))
            return
        handler.send_redirect(_with_query(redirect_uri, {"code": code, **state}))

    def _checked_redirect_uri(self, params: Mapping[str, str]) -> str:
        client_id = params.get("client_id", "")
        if not client_id:
            raise _OAuthError(900144, "invalid_request", "The request body must contain the following parameter: "
                              "'client_id'.")
        with self._cond:
            registered = self._public_clients.get(client_id)
        if registered is None:
            raise _OAuthError(700016, "unauthorized_client", f"Application with identifier '{client_id}' was not "
                              "found in the directory.")
        redirect_uri = params.get("redirect_uri", "")
        # Entra would fall back to a registered URI when redirect_uri is absent; the fake insists, so tests notice a
        # bridge that forgets to forward it.
        if not any(_redirect_uri_matches(uri, redirect_uri) for uri in registered):
            raise _OAuthError(50011, "invalid_request", f"The redirect URI '{redirect_uri}' specified in the request "
                              f"does not match the redirect URIs configured for the application '{client_id}'.")
        return redirect_uri

    def _issue_code(self, params: Mapping[str, str], redirect_uri: str) -> str:
        """Check everything after the redirect URI (errors go back to the client) and hand out a code."""
        response_type = params.get("response_type", "")
        if response_type != "code":
            raise _OAuthError(70005, "unsupported_response_type", f"response_type '{response_type}' is not "
                              "supported; FakeEntra implements only the authorization code flow.")
        if params.get("response_mode", "query") != "query":
            raise _OAuthError(900144, "invalid_request", "FakeEntra implements only response_mode=query.")
        challenge = self._checked_code_challenge(params)
        self._check_resource(params)
        requested = params.get("scope", "").split()
        full_scopes, short_scopes = self._api_scopes_in(requested, require=True)
        client_id = params["client_id"]
        code = "fake-code-" + b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
        with self._cond:
            if client_id not in self._pre_authorized and client_id not in self._user_consent:
                # Real Entra shows a consent screen here; the fake answers as if the user could not consent.
                raise _OAuthError(65001, "consent_required", "The user or administrator has not consented to use "
                                  f"the application with ID '{client_id}'. Send an interactive authorization "
                                  "request for this user and resource.")
            self._codes[code] = _AuthCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                code_challenge=challenge,
                full_scopes=full_scopes,
                short_scopes=short_scopes,
                user=self.signed_in_user,
                offline_access="offline_access" in requested,
                openid="openid" in requested,
                nonce=params.get("nonce"),
                expires_at=time.time() + self.code_lifetime,
            )
            self._issued_codes += 1
        return code

    @staticmethod
    def _checked_code_challenge(params: Mapping[str, str]) -> str:
        challenge = params.get("code_challenge")
        if not challenge:
            raise _OAuthError(9002325, "invalid_request", "Proof Key for Code Exchange is required for public "
                              "clients: the request must contain 'code_challenge'.")
        # RFC 7636 makes "plain" the default method; the fake, like any sane client, only accepts S256.
        method = params.get("code_challenge_method", "plain")
        if method != "S256":
            raise _OAuthError(9002325, "invalid_request", f"code_challenge_method '{method}' is not supported; "
                              "use S256.")
        if not _S256_CHALLENGE.match(challenge):
            raise _OAuthError(501491, "invalid_request", "Invalid size of Code_Challenge parameter.")
        return challenge

    def _check_resource(self, params: Mapping[str, str]) -> None:
        """The 2026 rule: an RFC 8707 `resource` must be exactly one of the API's identifier URIs."""
        with self._cond:
            if "resource" not in params or not self.enforce_resource_rule:
                return
            if params["resource"] in self.identifier_uris:
                return
        raise _OAuthError(9010010, "invalid_target", f"The resource parameter provided in the request "
                          f"('{params['resource']}') doesn't match with the requested scopes.")

    def _api_scopes_in(self, scopes: Iterable[str], *, require: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Full and short names of the API scopes among ``scopes`` (OIDC scopes are skipped), in request order."""
        full: list[str] = []
        short: list[str] = []
        with self._cond:
            identifier_uris, api_scopes = list(self.identifier_uris), set(self.api_scopes)
        for scope in scopes:
            if scope in _OIDC_SCOPES:
                continue
            prefix, slash, name = scope.rpartition("/")
            if not slash:
                raise _OAuthError(650053, "invalid_scope", f"The application asked for scope '{scope}' that "
                                  f"doesn't exist on the resource '{_GRAPH_APP_ID}'.")
            if prefix not in identifier_uris or name not in api_scopes:
                raise _OAuthError(70011, "invalid_scope", f"The provided value for the input parameter 'scope' is "
                                  f"not valid. The scope '{scope}' does not exist on this API.")
            if name not in short:
                full.append(scope)
                short.append(name)
        if require and not full:
            # Entra would issue a Graph token for an OIDC-only request; a sign-in for this API must name its scope.
            raise _OAuthError(70011, "invalid_scope", "The provided value for the input parameter 'scope' is not "
                              "valid: FakeEntra needs at least one scope of this API.")
        return tuple(full), tuple(short)

    # token endpoint grants ---------------------------------------------------------------------------------------
    @staticmethod
    def _grant_response(
        grant: Callable[[Mapping[str, str]], dict[str, Any]], form: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Run a grant; its _OAuthError becomes Entra's JSON error answer."""
        try:
            return 200, grant(form)
        except _OAuthError as exc:
            return exc.status, exc.body()

    def _check_public_client(self, form: Mapping[str, str]) -> str:
        client_id = form.get("client_id", "")
        if not client_id:
            raise _OAuthError(900144, "invalid_request", "The request body must contain the following parameter: "
                              "'client_id'.")
        with self._cond:
            known = client_id in self._public_clients
        if not known:
            raise _OAuthError(700016, "unauthorized_client", f"Application with identifier '{client_id}' was not "
                              "found in the directory.")
        if "client_secret" in form or "client_assertion" in form:
            raise _OAuthError(700025, "invalid_client", "Client is public so neither 'client_assertion' nor "
                              "'client_secret' should be presented.", status=401)
        self._check_resource(form)
        return client_id

    def _redeem_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        client_id = self._check_public_client(form)
        for name in ("code", "redirect_uri", "code_verifier"):
            if not form.get(name):
                raise _OAuthError(900144, "invalid_request", f"The request body must contain the following "
                                  f"parameter: '{name}'.")
        # Look up, check and consume in one critical section, so concurrent redemptions of one code yield one token.
        with self._cond:
            code = self._codes.get(form["code"])
            if code is None or time.time() >= code.expires_at:
                raise _OAuthError(70008, "invalid_grant", "The provided authorization code or refresh token has "
                                  "expired due to inactivity. Send a new interactive authorization request for this "
                                  "user and resource.")
            if code.redeemed:
                raise _OAuthError(54005, "invalid_grant", "OAuth2 Authorization code was already redeemed, please "
                                  "retry with a new valid code or use an existing refresh token.")
            if code.client_id != client_id:
                raise _OAuthError(70000, "invalid_grant", "The provided authorization code was issued to a "
                                  "different client.")
            if code.redirect_uri != form["redirect_uri"]:
                raise _OAuthError(500112, "invalid_grant", "The reply address does not match the reply address "
                                  "provided when requesting the authorization code.")
            verifier_hash = b64url(hashlib.sha256(form["code_verifier"].encode("utf-8")).digest())
            if not hmac.compare_digest(verifier_hash, code.code_challenge):
                raise _OAuthError(501481, "invalid_grant", "The Code_Verifier does not match the code_challenge "
                                  "supplied in the authorization request.")
            # Consumed only by a successful redemption: a failed attempt (e.g. a wrong verifier) leaves it usable.
            code.redeemed = True
        return self._tokens_for(
            client_id=client_id, user=code.user, full_scopes=code.full_scopes, short_scopes=code.short_scopes,
            offline_access=code.offline_access, openid=code.openid, nonce=code.nonce, form=form,
        )

    def _redeem_refresh_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        client_id = self._check_public_client(form)
        if not form.get("refresh_token"):
            raise _OAuthError(900144, "invalid_request", "The request body must contain the following parameter: "
                              "'refresh_token'.")
        requested = form.get("scope", "").split()
        full_scopes, short_scopes = self._api_scopes_in(requested, require=False)
        with self._cond:
            grant = self._refresh_grants.get(form["refresh_token"])
            if grant is None or grant.client_id != client_id:
                # Entra does not tell a token of another client from garbage.
                raise _OAuthError(70000, "invalid_grant", "Provided grant is invalid or malformed.")
            if grant.revoked:
                raise _OAuthError(700082, "invalid_grant", "The refresh token has expired due to inactivity.")
        if not full_scopes:
            full_scopes, short_scopes = grant.full_scopes, grant.short_scopes
        elif not set(short_scopes) <= set(grant.short_scopes):
            raise _OAuthError(70011, "invalid_scope", "The provided value for the input parameter 'scope' is not "
                              "valid: a refresh may only narrow the scopes of the original sign-in.")
        # Rotation: a new refresh token comes back every time and the presented one stays valid, as with Entra.
        return self._tokens_for(
            client_id=client_id, user=grant.user, full_scopes=full_scopes, short_scopes=short_scopes,
            offline_access=True, openid=grant.openid or "openid" in requested, nonce=None, form=form,
            original_scopes=(grant.full_scopes, grant.short_scopes),
        )

    def _tokens_for(
        self,
        *,
        client_id: str,
        user: str,
        full_scopes: tuple[str, ...],
        short_scopes: tuple[str, ...],
        offline_access: bool,
        openid: bool,
        nonce: str | None,
        form: Mapping[str, str],
        original_scopes: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        """The token response of a successful sign-in or refresh for ``user`` through public client ``client_id``."""
        lifetime = 3600
        access_token = self.mint(user=user, client_id=client_id, scopes=list(short_scopes), expires_in=lifetime)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join([*full_scopes, *(["offline_access"] if offline_access else [])]),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        with self._cond:
            self._issued_sign_in_tokens.append(access_token)
            if offline_access:
                # A refresh token covers what the user consented to at sign-in, even if this answer is narrower.
                granted = original_scopes or (full_scopes, short_scopes)
                refresh_token = "fake-rt-" + b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
                self._refresh_grants[refresh_token] = _RefreshGrant(
                    client_id=client_id, user=user, full_scopes=granted[0], short_scopes=granted[1], openid=openid
                )
                body["refresh_token"] = refresh_token
        if openid:
            body["id_token"] = self._id_token(client_id, user, nonce, lifetime)
        if form.get("client_info") == "1":  # MSAL asks for it to key its token cache
            body["client_info"] = b64url(json.dumps({"uid": self.user_oid(user), "utid": self.tenant_id}).encode())
        return body

    def _id_token(self, client_id: str, user: str, nonce: str | None, lifetime: int) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": client_id, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "name": f"{user.capitalize()} Example", "oid": self.user_oid(user),
            "preferred_username": f"{user}@contoso.example", "tid": self.tenant_id, "ver": "2.0",
            # Like `sub` in access tokens, the id token's `sub` is pairwise, here per client app.
            "sub": b64url(hashlib.sha256(f"{client_id}:{user}".encode()).digest())[:43],
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign(claims)

    # ---- token minting ----------------------------------------------------------------------------------------
    @staticmethod
    def user_oid(user: str) -> str:
        """The deterministic object ID (`oid`) minted for a user name."""
        return str(uuid.uuid5(_OID_NAMESPACE, f"user:{user}"))

    @staticmethod
    def service_principal_oid(client_id: str) -> str:
        """The deterministic `oid` minted for a client app's service principal in app-only tokens."""
        return str(uuid.uuid5(_OID_NAMESPACE, f"sp:{client_id}"))

    def pairwise_sub(self, user: str) -> str:
        # Entra's `sub` is pairwise (per user and per API) and opaque, unlike `oid`.
        return b64url(hashlib.sha256(f"{self.api_client_id}:{user}".encode()).digest())[:43]

    def mint(
        self,
        *,
        claims: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        headers: Mapping[str, Any] | None = None,
        key: str | rsa.RSAPrivateKey | None = None,
        alg: str = "RS256",
        hs_secret: bytes | None = None,
        expires_in: int = 3600,
        not_before_offset: int = 0,
        client_id: str | None = None,
        scopes: str | Iterable[str] | None = "user_impersonation",
        user: str = "alice",
        now: int | None = None,
    ) -> str:
        """A v2 delegated (user) access token for this API, valid by default.

        ``claims`` overrides or adds claims, ``remove`` deletes them; ``headers`` overrides the JOSE header (a None
        value removes that header). ``scopes=None`` omits `scp`. See sign() for ``key``, ``alg`` and ``hs_secret``.
        """
        issued_at = int(time.time()) if now is None else now
        payload: dict[str, Any] = {
            "aud": self.api_client_id,
            "iss": self.issuer,
            "iat": issued_at,
            "nbf": issued_at + not_before_offset,
            "exp": issued_at + expires_in,
            "aio": b64url(uuid.uuid4().bytes),
            "azp": client_id or self.allowed_client_id,
            "azpacr": "0",  # public client, as VS Code is
            "name": f"{user.capitalize()} Example",
            "oid": self.user_oid(user),
            "preferred_username": f"{user}@contoso.example",
            "rh": b64url(uuid.uuid4().bytes),
            "scp": _scope_string(scopes),
            "sid": str(uuid.uuid4()),
            "sub": self.pairwise_sub(user),
            "tid": self.tenant_id,
            "uti": b64url(uuid.uuid4().bytes)[:22],
            "ver": "2.0",
        }
        if payload["scp"] is None:
            del payload["scp"]
        return self.sign(_apply(payload, claims, remove), headers=headers, key=key, alg=alg, hs_secret=hs_secret)

    def mint_app_only(
        self,
        roles: Iterable[str] = ("Tools.Invoke",),
        *,
        client_id: str | None = None,
        claims: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        **kwargs: Any,
    ) -> str:
        """A v2 app-only (client credentials) token: `idtyp` "app", app roles in `roles`, no `scp`, no user claims."""
        client = client_id or self.allowed_client_id
        sp_oid = self.service_principal_oid(client)
        app_claims: dict[str, Any] = {
            "azp": client,
            "azpacr": "1",  # confidential client (secret); "2" would be a certificate
            "idtyp": "app",
            "oid": sp_oid,
            "sub": sp_oid,  # for app-only tokens sub == oid of the service principal
            "roles": list(roles),
        }
        app_claims.update(claims or {})
        removed = {"scp", "name", "preferred_username", "sid", *remove}
        return self.mint(claims=app_claims, remove=removed, scopes=None, client_id=client, **kwargs)

    def mint_v1(
        self,
        *,
        client_id: str | None = None,
        claims: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        user: str = "alice",
        **kwargs: Any,
    ) -> str:
        """A v1 delegated token (what Entra issues when the API does not ask for v2): the product must reject it."""
        client = client_id or self.allowed_client_id
        v1_claims: dict[str, Any] = {
            "iss": self.issuer_v1,
            "aud": self.app_id_uri,
            "ver": "1.0",
            "appid": client,
            "appidacr": "0",
            "upn": f"{user}@contoso.example",
            "unique_name": f"{user}@contoso.example",
        }
        v1_claims.update(claims or {})
        removed = {"azp", "azpacr", "preferred_username", *remove}
        return self.mint(claims=v1_claims, remove=removed, user=user, client_id=client, **kwargs)

    def sign(
        self,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, Any] | None = None,
        key: str | rsa.RSAPrivateKey | None = None,
        alg: str = "RS256",
        hs_secret: bytes | None = None,
    ) -> str:
        """Encode and sign an arbitrary payload. Built by hand, not with PyJWT, because PyJWT rightly refuses to
        make some of the hostile tokens tests need (alg "none", HMAC keyed with an RSA public key).

        ``key``: a kid of this instance's keys (published or retired) or a foreign RSA private key; default the
        current signing key. The header `kid` is the signing kid unless overridden, so a foreign key by default
        forges a token that claims a trusted kid. ``alg``: RS256/384/512, PS256/384/512, HS256/384/512 (secret
        ``hs_secret``, default the signing key's public PEM: the key-confusion attack) or "none" (empty signature).
        """
        with self._cond:
            if key is None or isinstance(key, str):
                signing = self._key(key or self._signing_kid)
                private_key, kid = signing.private_key, signing.kid
                default_secret = signing.public_pem()
            else:
                private_key, kid = key, self._signing_kid
                default_secret = self._key(self._signing_kid).public_pem()

        header: dict[str, Any] = {"typ": "JWT", "alg": alg, "kid": kid}
        for name, value in (headers or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value

        signing_input = f"{_json_segment(header)}.{_json_segment(payload)}"
        signature = _signature(signing_input.encode("ascii"), alg, private_key, hs_secret or default_secret)
        return f"{signing_input}.{b64url(signature)}"


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def _signature(signing_input: bytes, alg: str, private_key: rsa.RSAPrivateKey, hs_secret: bytes) -> bytes:
    if alg.lower() == "none":
        return b""
    family, bits = alg[:2].upper(), alg[2:]
    if bits not in _HASHES:
        raise ValueError(f"unsupported alg {alg!r}")
    if family == "RS":
        return private_key.sign(signing_input, padding.PKCS1v15(), _HASHES[bits]())
    if family == "PS":
        digest = _HASHES[bits]()
        return private_key.sign(signing_input, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    if family == "HS":
        return hmac.new(hs_secret, signing_input, f"sha{bits}").digest()
    raise ValueError(f"unsupported alg {alg!r}")


def _scope_string(scopes: str | Iterable[str] | None) -> str | None:
    if scopes is None or isinstance(scopes, str):
        return scopes
    return " ".join(scopes)


def _apply(payload: dict[str, Any], claims: Mapping[str, Any] | None, remove: Iterable[str]) -> dict[str, Any]:
    payload.update(claims or {})
    for name in remove:
        payload.pop(name, None)
    return payload


def aadsts_error(
    code: int, error: str, description: str, *, suberror: str | None = None, claims: str | None = None
) -> dict[str, Any]:
    """An Entra token-endpoint error body, e.g. aadsts_error(65001, "invalid_grant", "...", suberror=...)."""
    body: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} "
        f"Correlation ID: {uuid.uuid4()} Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        body["suberror"] = suberror
    if claims:
        body["claims"] = claims
    return body


def _redirect_uri_matches(registered: str, requested: str) -> bool:
    """Entra's rule for a public client: byte-equal, or both loopback URIs equal once their ports are dropped."""
    if registered == requested:
        return True
    portless = _portless_loopback(registered)
    return portless is not None and portless == _portless_loopback(requested)


def _portless_loopback(uri: str) -> str | None:
    match = _LOOPBACK_REDIRECT.match(uri)
    return None if match is None else match.group(1) + uri[match.end():]


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` appended to its query, keeping any query the registered redirect URI already has."""
    base, hash_mark, fragment = uri.partition("#")
    separator = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode(params)}{hash_mark}{fragment}"


def _error_page(description: str) -> str:
    """Entra's "Sorry, but we're having trouble signing you in" page, shown instead of redirecting."""
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body>"
        "<h1>Sorry, but we\u2019re having trouble signing you in.</h1>"
        f"<p id=\"error\">{html.escape(description)}</p></body></html>"
    )


def _tenant_not_found(tenant: str) -> dict[str, Any]:
    return {
        "error": "invalid_tenant",
        "error_description": (
            f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud."
        ),
        "error_codes": [90002],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "error_uri": "https://login.microsoftonline.com/error?code=90002",
    }
