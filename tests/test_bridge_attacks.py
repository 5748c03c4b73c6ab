"""Hostile tests for the sign-in bridge (shared/bridge, its routes in shared/http/pipeline.py and function_app.py).

Every test here attacks one of the bridge's security rules: redirects only to validated URIs, consent per client,
PKCE S256 only, ``resource`` absent or canonical, a CSRF-bound consent form, tamper-proof registration IDs, a
restricted client-metadata fetcher, a token endpoint that relays Entra without 5xx or hangs, no secrets in logs,
and Host / bridge-off handling. Tests that pass document defended behaviour; tests marked "FINDING" in their
docstring fail on the code as reviewed and describe the weakness and its fix.

Most tests call the bridge's handlers directly with ``HttpRequest`` values (no sockets); the fake Entra ID answers
over real HTTPS wherever a code or token is needed, and the hostile metadata host below is a real TLS server that
misbehaves on purpose. Every network call has a timeout and every background thread a bounded join.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

import function_app
import tools as forker_tools
from bridge_support import (
    BRIDGE_CLIENT_ID,
    Browser,
    MetadataHost,
    bridge_env,
    bridged_server,
    consent_fields,
    register_bridge_app,
    serving,
)
from conftest import settings_env
from fake_entra import FakeEntra, shared_ca
from harness import FunctionsHarness
from shared.bridge import metadata_documents
from shared.bridge import token as bridge_token
from shared.bridge.bridge import SignInBridge
from shared.bridge.browser import COOKIE_NAME, client_key
from shared.bridge.signing import Signer, b64url
from shared.http.messages import HttpRequest, HttpResponse
from shared.http.pipeline import McpServer
from shared.settings import decode_key, load_settings
from support import JWT_LIKE, capture_all_logs

HOST = "127.0.0.1:7071"
ISSUER = f"http://{HOST}"
RESOURCE = ISSUER + "/mcp"
AUTHORIZE = "/oauth/authorize"
TOKEN = "/oauth/token"
REGISTER = "/oauth/register"
AS_METADATA = "/.well-known/oauth-authorization-server"
FORM = "application/x-www-form-urlencoded"
OTHER_KEY = "b3RoZXItZGVwbG95bWVudC1rZXktdGhhdC1pcy0zMi1ieXRlcw=="
CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"
LOOPBACK = "http://127.0.0.1:8080/callback"  # the DCR client's registered http://127.0.0.1/callback, on a port


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = b64url(os.urandom(32))
    return verifier, b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def get(path: str, query: Mapping[str, str] | None = None, *, host: str = HOST,
        headers: Mapping[str, str] | None = None, method: str = "GET") -> HttpRequest:
    return HttpRequest(method, f"http://{host}{path}", {"host": host, **(headers or {})}, query=dict(query or {}))


def post(path: str, body: bytes | Mapping[str, str], *, host: str = HOST, content_type: str = FORM,
         headers: Mapping[str, str] | None = None) -> HttpRequest:
    raw = body if isinstance(body, bytes) else urlencode(dict(body)).encode()
    return HttpRequest("POST", f"http://{host}{path}",
                       {"host": host, "content-type": content_type, **(headers or {})}, raw, query={})


def header(response: HttpResponse, name: str) -> str | None:
    for key, value in response.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def assert_clean_headers(response: HttpResponse) -> None:
    for key, value in response.headers.items():
        assert "\r" not in key + value and "\n" not in key + value, (key, value)


def assert_error_page(response: HttpResponse, status: int = 400) -> None:
    """An HTML error page: the given status, no Location, no caching, no framing, no stack trace."""
    assert response.status == status, (response.status, header(response, "location"), response.body[:300])
    assert header(response, "location") is None
    assert (header(response, "content-type") or "").startswith("text/html")
    assert "frame-ancestors 'none'" in (header(response, "content-security-policy") or "")
    assert header(response, "cache-control") == "no-store"
    assert b"Traceback" not in response.body and b'File "' not in response.body
    assert_clean_headers(response)


def assert_oauth_error(response: HttpResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:300])
    assert (header(response, "content-type") or "").startswith("application/json")
    body = json.loads(response.body)
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str)
    assert b"Traceback" not in response.body
    assert_clean_headers(response)
    return body


def is_consent_page(response: HttpResponse) -> bool:
    return response.status == 200 and b'name="decision" value="allow"' in response.body


def redirect_query(response: HttpResponse) -> dict[str, str]:
    location = header(response, "location")
    assert location is not None, (response.status, response.body[:300])
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def cookie_of(response: HttpResponse) -> str:
    set_cookie = header(response, "set-cookie")
    assert set_cookie and set_cookie.startswith(COOKIE_NAME + "="), set_cookie
    return set_cookie.split(";", 1)[0]


def authorize_params(client_id: str, redirect_uri: str = LOOPBACK, challenge: str | None = None,
                     **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "code_challenge": challenge or pkce()[1], "code_challenge_method": "S256", "state": "client-state-123",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}


def register(server: McpServer, redirect_uris: list[str], *, name: str = "Test client", **extra: Any) -> str:
    response = server.handle_register(post(REGISTER, json.dumps(
        {"redirect_uris": redirect_uris, "client_name": name, **extra}).encode(), content_type="application/json"))
    assert response.status == 201, response.body
    return json.loads(response.body)["client_id"]


def consent_page(server: McpServer, params: Mapping[str, str], cookie: str | None = None) -> HttpResponse:
    return server.handle_authorize(get(AUTHORIZE, params, headers={"cookie": cookie} if cookie else None))


def decide(server: McpServer, fields: Mapping[str, str], *, cookie: str | None, decision: str = "allow",
           origin: str | None = ISSUER) -> HttpResponse:
    headers = {}
    if cookie:
        headers["cookie"] = cookie
    if origin:
        headers["origin"] = origin
    return server.handle_authorize(post(AUTHORIZE, {**fields, "decision": decision}, headers=headers))


def allow(server: McpServer, params: Mapping[str, str], cookie: str | None = None) -> tuple[HttpResponse, str]:
    """Show the consent page and click Allow; returns the answer and the browser's (new) cookie."""
    page = consent_page(server, params, cookie)
    assert is_consent_page(page), (page.status, page.body[:300])
    cookie = cookie_of(page) if header(page, "set-cookie") else cookie
    answer = decide(server, consent_fields(page.body.decode()), cookie=cookie)
    assert answer.status == 302, (answer.status, answer.body[:300])
    return answer, cookie_of(answer)


def entra_get(fake: FakeEntra, url: str) -> str:
    """A browser signed in to (fake) Entra ID opening ``url``; returns where Entra sends it (no logging client)."""
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=fake.client_ssl_context(),
                                             timeout=10)
    try:
        connection.request("GET", parts.path + "?" + parts.query)
        response = connection.getresponse()
        response.read()
        location = response.getheader("Location")
    finally:
        connection.close()
    assert response.status == 302 and location, (response.status, url)
    return location


def sign_in(server: McpServer, fake: FakeEntra, client_id: str, redirect_uri: str = LOOPBACK,
            cookie: str | None = None) -> tuple[str, str, str]:
    """Consent, go through Entra, and return (code, verifier, cookie) as the client's redirect URI receives them."""
    verifier, challenge = pkce()
    answer, cookie = allow(server, authorize_params(client_id, redirect_uri, challenge), cookie)
    location = header(answer, "location") or ""
    assert location.startswith(fake.authority), location
    back = entra_get(fake, location)
    # Entra returns to the bridge's callback, which passes the code on in the browser that consented.
    assert back.startswith(ISSUER + "/oauth/entra-callback?"), back
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    forwarded = server.handle_sign_in_callback(get("/oauth/entra-callback", query, headers={"cookie": cookie}))
    back = header(forwarded, "location") or ""
    assert forwarded.status == 302 and back.startswith(redirect_uri), (forwarded.status, back)
    query = parse_qs(urlsplit(back).query)
    assert "code" in query, back
    return query["code"][0], verifier, cookie


def redeem(server: McpServer, client_id: str, code: str, verifier: str, redirect_uri: str = LOOPBACK,
           **extra: str) -> HttpResponse:
    return server.handle_token(post(TOKEN, {"grant_type": "authorization_code", "client_id": client_id,
                                            "code": code, "redirect_uri": redirect_uri,
                                            "code_verifier": verifier, **extra}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HostileHost:
    """A TLS server on 127.0.0.1 (trusted through the fake Entra's CA) whose paths misbehave on purpose.

    ``routes`` maps a path to a behaviour (a function of the request handler); ``default`` answers the rest.
    ``stop`` ends every slow behaviour, so a test's teardown never waits on a dripping socket.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.default: Callable[[BaseHTTPRequestHandler], None] = lambda h: _send(h, 404, b"")
        self.hits: dict[str, int] = {}
        self.stop = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                host.hits[self.path] = host.hits.get(self.path, 0) + 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with contextlib.suppress(OSError):
                    host.routes.get(self.path, host.default)(self)

            do_GET = _serve
            do_POST = _serve

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        shared_ca().issue_cert("127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"https://{self.netloc}{path}"

    def __enter__(self) -> HostileHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                       **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def _document(url: str, **fields: Any) -> bytes:
    return json.dumps({"client_id": url, "client_name": "Hostile", "redirect_uris": ["http://127.0.0.1/callback"],
                       "token_endpoint_auth_method": "none", **fields}).encode()


# ---------------------------------------------------------------------------------------------------------------
# fixtures: one bridged server for the handler-level tests, with an honest and a hostile metadata host
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metadata_host() -> Iterator[MetadataHost]:
    with MetadataHost() as host:
        yield host


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileHost]:
    with HostileHost() as host:
        yield host


@pytest.fixture(scope="module")
def outsider() -> Iterator[MetadataHost]:
    """A metadata host the bridge does NOT allow."""
    with MetadataHost() as host:
        yield host


@pytest.fixture(scope="module")
def server(fake_entra: FakeEntra, metadata_host: MetadataHost, hostile: HostileHost) -> McpServer:
    return bridged_server(fake_entra,
                          MCP_BRIDGE_CLIENT_METADATA_HOSTS=f"vscode.dev,{metadata_host.netloc},{hostile.netloc}")


@pytest.fixture(scope="module")
def dcr_loopback(server: McpServer) -> str:
    """A dynamically registered client with Claude Code's loopback redirect URIs."""
    return register(server, ["http://127.0.0.1/callback", "http://localhost/callback"])


@pytest.fixture(scope="module")
def vscode_like(metadata_host: MetadataHost) -> str:
    """A metadata-document client like VS Code, plus one URI the bridge's Entra app does not have."""
    return metadata_host.publish("/vscode-like.json", ["http://127.0.0.1:33418/", "https://vscode.dev/redirect",
                                                        "https://evil.example/cb", "http://127.0.0.1/other"])


@pytest.fixture
def master_key(server: McpServer) -> bytes:
    key = server.settings.request_state_key
    assert key is not None
    return key


# ---------------------------------------------------------------------------------------------------------------
# redirect URIs: look-alikes get an error page, never a Location
# ---------------------------------------------------------------------------------------------------------------

LOOKALIKE_LOOPBACK = [
    # userinfo and host look-alikes
    "http://127.0.0.1@evil.example/callback",
    "http://127.0.0.1:8080@evil.example/callback",
    "http://evil.example@127.0.0.1/callback",
    "http://user:pw@127.0.0.1:8080/callback",
    "http://127.0.0.1%40evil.example/callback",
    "http://127.0.0.1.evil.example/callback",
    "http://127.0.0.1%2eevil.example/callback",
    "http://localhost.evil.example/callback",
    "http://evil.localhost/callback",
    "http://127.0.0.1\\@evil.example/callback",
    "http://127.0.0.1:8080\\@evil.example/callback",
    # paths
    "http://localhost:1/callback/../x",
    "http://localhost:1/callback/..",
    "http://localhost:1/x/../callback",
    "http://localhost:1/./callback",
    "http://localhost:1/callback/",
    "http://localhost:1//callback",
    "http://localhost:1/callback;evil",
    "http://127.0.0.1:8080/%63allback",
    "http://127.0.0.1:8080/callback%2F..%2Fx",
    "http://127.0.0.1:8080/callback%00",
    # case tricks
    "http://localhost:1/Callback",
    "http://localhost:1/CALLBACK",
    "HTTP://127.0.0.1:8080/callback",
    "Http://localhost:8080/callback",
    "http://LOCALHOST:8080/callback",
    "http://LocalHost/callback",
    # fragments
    "http://127.0.0.1:8080/callback#",
    "http://127.0.0.1:8080/callback#evil",
    "http://127.0.0.1:8080/callback#@evil.example",
    # trailing dots and other spellings of loopback
    "http://127.0.0.1./callback",
    "http://localhost.:8080/callback",
    "http://127.1/callback",
    "http://127.0.1:8080/callback",
    "http://2130706433/callback",
    "http://0x7f000001/callback",
    "http://0177.0.0.1/callback",
    "http://127.0.0.2:8080/callback",
    "http://0.0.0.0:8080/callback",
    "http://\uff11\uff12\uff17.0.0.1/callback",
    # IPv6 forms (the client registered 127.0.0.1 and localhost only)
    "http://[::1]:8080/callback",
    "http://[::1]/callback",
    "http://[0:0:0:0:0:0:0:1]:8080/callback",
    "http://[::ffff:127.0.0.1]:8080/callback",
    "http://[::ffff:7f00:1]/callback",
    "http://[::1%25eth0]/callback",
    # query tricks
    "http://127.0.0.1:8080/callback?next=https://evil.example",
    "http://127.0.0.1:8080/callback?&",
    "http://127.0.0.1:8080/callback?redirect_uri=http://127.0.0.1/callback",
    # ports
    "http://127.0.0.1:0/callback",
    "http://127.0.0.1:65536/callback",
    "http://127.0.0.1:99999/callback",
    "http://127.0.0.1:-1/callback",
    "http://127.0.0.1:+80/callback",
    "http://127.0.0.1:/callback",
    "http://127.0.0.1:\uff18\uff10/callback",
    # schemes and shapes
    "https://127.0.0.1:8080/callback",
    "//127.0.0.1:8080/callback",
    "127.0.0.1:8080/callback",
    "http:/127.0.0.1/callback",
    "http:\\\\127.0.0.1\\callback",
    "javascript://127.0.0.1/callback%0aalert(1)",
    " http://127.0.0.1:8080/callback",
    "http://127.0.0.1:8080/callback ",
    "http://127.0.0.1:8080/callback\x00",
    "http://127.0.0.1:8080/callback\x0b",
    "http://127.0.0.1:8080/callback" + "a" * 2100,
]


@pytest.mark.parametrize("redirect_uri", LOOKALIKE_LOOPBACK)
def test_lookalike_loopback_redirect_uris_get_an_error_page(
    server: McpServer, dcr_loopback: str, redirect_uri: str
) -> None:
    # A bad response_type too: had the redirect URI been trusted, the error would have been redirected to it.
    for params in (authorize_params(dcr_loopback, redirect_uri),
                   authorize_params(dcr_loopback, redirect_uri, response_type="token")):
        assert_error_page(consent_page(server, params))


@pytest.mark.parametrize("redirect_uri", [u for u in LOOKALIKE_LOOPBACK if len(u) < 2000])
def test_registration_refuses_lookalike_redirect_uris(server: McpServer, redirect_uri: str) -> None:
    response = server.handle_register(post(REGISTER, json.dumps({"redirect_uris": [redirect_uri]}).encode(),
                                           content_type="application/json"))
    assert_oauth_error(response, 400, "invalid_redirect_uri")


LOOKALIKE_HTTPS = [
    "https://vscode.dev/redirect/",
    "https://VSCODE.DEV/redirect",
    "https://vscode.dev/Redirect",
    "https://vscode.dev./redirect",
    "https://vscode.dev:443/redirect",
    "https://vscode.dev:8443/redirect",
    "https://vscode.dev/redirect?x=1",
    "https://vscode.dev/redirect?",
    "https://vscode.dev/redirect#x",
    "https://vscode.dev@evil.example/redirect",
    "https://evil.example@vscode.dev/redirect",
    "https://vscode.dev.evil.example/redirect",
    "https://vscode.dev/redirect/../redirect",
    "https://vscode.dev/%72edirect",
    "http://vscode.dev/redirect",
    "https://vscode.dev/redirect\t",
    "https://vscode.dev/re\ndirect",
    "https://vscode.dev/redirect%0d%0aSet-Cookie:x=y",
]


@pytest.mark.parametrize("redirect_uri", LOOKALIKE_HTTPS)
def test_lookalike_https_redirect_uris_get_an_error_page(server: McpServer, vscode_like: str,
                                                         redirect_uri: str) -> None:
    for params in (authorize_params(vscode_like, redirect_uri),
                   authorize_params(vscode_like, redirect_uri, response_type="token")):
        assert_error_page(consent_page(server, params))


@pytest.mark.parametrize("redirect_uri", ["https://evil.example/cb", "http://127.0.0.1:5000/other"])
def test_a_redirect_uri_of_the_client_but_not_of_the_bridge_gets_an_error_page(
    server: McpServer, vscode_like: str, redirect_uri: str
) -> None:
    response = consent_page(server, authorize_params(vscode_like, redirect_uri, response_type="token"))
    assert_error_page(response)
    assert b"MCP_BRIDGE_REDIRECT_URIS" in response.body


@pytest.mark.parametrize("redirect_uri", [CLAUDE_CALLBACK, "http://localhost:5000/oauth/callback",
                                          "http://127.0.0.1:5000/callback", "http://localhost:33418/"])
def test_a_redirect_uri_of_the_bridge_but_not_of_the_client_gets_an_error_page(
    server: McpServer, vscode_like: str, redirect_uri: str
) -> None:
    assert_error_page(consent_page(server, authorize_params(vscode_like, redirect_uri, response_type="token")))


def test_a_registered_client_is_checked_against_todays_bridge_redirect_uris(
    fake_entra: FakeEntra, server: McpServer
) -> None:
    # Registered while the bridge allowed http://localhost/callback; the operator has since narrowed the list.
    client_id = register(server, ["http://localhost/callback"])
    narrowed = bridged_server(fake_entra, MCP_BRIDGE_REDIRECT_URIS="http://127.0.0.1/callback")
    assert_error_page(consent_page(narrowed, authorize_params(client_id, "http://localhost:8080/callback",
                                                              response_type="token")))
    refused = narrowed.handle_register(post(REGISTER, json.dumps({"redirect_uris": ["http://localhost/callback"]})
                                            .encode(), content_type="application/json"))
    assert_oauth_error(refused, 400, "invalid_redirect_uri")


def test_loopback_redirect_uris_admit_any_port_and_nothing_else(server: McpServer, dcr_loopback: str) -> None:
    for uri in ("http://127.0.0.1:1/callback", "http://127.0.0.1:65535/callback", "http://127.0.0.1/callback",
                "http://localhost:53682/callback"):
        assert is_consent_page(consent_page(server, authorize_params(dcr_loopback, uri))), uri


@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:8080/call\tback",
    "http://127.0.\n0.1:8080/callback",
    "http://127.0.0.1:8080/callback\r\n",
    "http://127.0.0.1:8080/callback?",
])
def test_redirect_uris_that_only_match_after_url_parsing_get_an_error_page(
    server: McpServer, dcr_loopback: str, redirect_uri: str
) -> None:
    """FINDING (low): loopback matching compares urlsplit() parts, and urlsplit silently deletes TAB/CR/LF and drops
    an empty '?'. So a redirect_uri that is not byte-equal to any registered URI (modulo the port) is accepted: it is
    shown on the consent page, forwarded raw to Entra (which refuses it), and error redirects go to a *different*
    string (the parsed one). Fix: shared/bridge/redirects.py redirect_matches (lines 26-40): refuse any requested URI
    with characters outside RFC 3986 (whitespace, controls) and compare the raw string with only the port removed
    (as Entra does), not the parsed components."""
    response = consent_page(server, authorize_params(dcr_loopback, redirect_uri, response_type="token"))
    assert_error_page(response)


# ---------------------------------------------------------------------------------------------------------------
# client IDs: unknown, non-HTTPS, not allowed, forged, tampered, truncated, sealed with another key
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", [
    "", "not-a-url", "vscode", "http://vscode.dev/oauth/client-metadata.json",
    "https://evil.example/client.json", "https://vscode.dev.evil.example/client.json",
    "https://vscode.dev@evil.example/client.json", "https://evil.example#vscode.dev/x",
    "https://evil.example/?.vscode.dev/x", "https://vscode.dev/", "https://vscode.dev", "https://vscode.dev/a/../b",
    "https://vscode.dev/a/./b", "https://vscode.dev/x#frag", "https://vscode.dev:8443/x", "https://vscode.dev./x",
    "https://vscode.dev/x\\y", "https://vscode.dev/x y", "https://vsc\u043ede.dev/x", "https://vscode.dev/x\r\nX: y",
    "https://vscode.dev/" + "a" * 1100, "mcp-dcr.", "mcp-dcr", "MCP-DCR.abc.def", "javascript:alert(1)",
])
def test_unknown_or_malformed_client_ids_get_an_error_page(server: McpServer, client_id: str) -> None:
    assert_error_page(consent_page(server, authorize_params(client_id, response_type="token")))


def test_metadata_documents_are_not_fetched_from_hosts_not_allowed(server: McpServer, outsider: MetadataHost) -> None:
    url = outsider.publish("/client.json", ["http://127.0.0.1/callback"])
    for client_id in (url, url.replace("https://", "http://"), f"https://127.0.0.1@{outsider.netloc}/client.json"):
        assert_error_page(consent_page(server, authorize_params(client_id, response_type="token")))
    assert outsider.fetches == 0


def test_an_http_metadata_url_on_an_allowed_host_is_not_fetched(server: McpServer, metadata_host: MetadataHost) -> None:
    url = metadata_host.publish("/plain.json", ["http://127.0.0.1/callback"])
    before = metadata_host.fetches
    assert_error_page(consent_page(server, authorize_params(url.replace("https://", "http://"))))
    assert metadata_host.fetches == before


def _forged_ids(server: McpServer, master: bytes) -> list[str]:
    real = register(server, ["http://127.0.0.1/callback"])
    body, mac = real[len("mcp-dcr."):].split(".")
    evil = {"r": ["http://127.0.0.1/callback", "https://evil.example/cb"], "n": "Visual Studio Code", "t": 0}
    evil_body = b64url(json.dumps(evil, separators=(",", ":")).encode())
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    return [
        f"mcp-dcr.{evil_body}.{mac}",  # tampered payload, original MAC
        f"mcp-dcr.{evil_body}.{b64url(os.urandom(32))}",  # forged MAC
        f"mcp-dcr.{evil_body}",  # no MAC
        f"mcp-dcr.{evil_body}.",
        f"mcp-dcr.{flipped}.{mac}",
        real[:-1],  # truncated
        real[:-10],
        f"mcp-dcr.{body}",
        f"mcp-dcr.{body}.{mac}.extra",
        f"mcp-dcr.{body}.{mac.upper()}",
        f"mcp-dcr..{mac}",
        "mcp-dcr." + Signer(decode_key(OTHER_KEY), "registered-client").seal(evil),  # another deployment's key
        "mcp-dcr." + Signer(master, "browser-state").seal(evil),  # our key, another purpose
        "mcp-dcr." + Signer(master, "consent-form").seal(evil),
        "mcp-dcr." + Signer(master, "registered-client").seal({"r": "http://127.0.0.1/callback", "n": "x"}),
        "mcp-dcr." + Signer(master, "registered-client").seal({"r": [1], "n": "x"}),
        "mcp-dcr." + Signer(master, "registered-client").seal(["http://127.0.0.1/callback"]),
        "mcp-dcr." + "A" * 9000 + "." + mac,
        "mcp-dcr.\u00e9\u00e9." + mac,
    ]


@pytest.fixture
def forged_ids(server: McpServer, master_key: bytes) -> list[str]:
    return _forged_ids(server, master_key)


def test_forged_tampered_and_foreign_registration_ids_are_refused_everywhere(
    server: McpServer, entra: FakeEntra, forged_ids: list[str]
) -> None:
    for client_id in forged_ids:
        assert_error_page(consent_page(server, authorize_params(client_id, "http://127.0.0.1:8080/callback",
                                                                response_type="token")))
        response = redeem(server, client_id, "some-code", pkce()[0], "http://127.0.0.1:8080/callback")
        assert_oauth_error(response, 401, "invalid_client")
        refresh = server.handle_token(post(TOKEN, {"grant_type": "refresh_token", "client_id": client_id,
                                                   "refresh_token": "rt"}))
        assert_oauth_error(refresh, 401, "invalid_client")
    assert entra.token_requests == []


def test_a_registration_id_from_another_deployment_is_refused(fake_entra: FakeEntra, server: McpServer) -> None:
    other = bridged_server(fake_entra, MCP_REQUEST_STATE_KEY=OTHER_KEY)
    client_id = register(other, ["http://127.0.0.1/callback"])
    assert is_consent_page(consent_page(other, authorize_params(client_id)))
    response = consent_page(server, authorize_params(client_id))
    assert_error_page(response)
    assert b"register again" in response.body


def test_a_browser_cookie_is_not_a_registration_id(server: McpServer, dcr_loopback: str) -> None:
    cookie = cookie_of(consent_page(server, authorize_params(dcr_loopback)))
    value = cookie.split("=", 1)[1]
    assert_error_page(consent_page(server, authorize_params("mcp-dcr." + value)))


def test_dynamic_registration_off_refuses_registration_ids(fake_entra: FakeEntra, server: McpServer) -> None:
    client_id = register(server, ["http://127.0.0.1/callback"])
    off = bridged_server(fake_entra, MCP_BRIDGE_DYNAMIC_REGISTRATION="false")
    assert_oauth_error(off.handle_register(post(REGISTER, b"{}", content_type="application/json")), 404, "not_found")
    assert_error_page(consent_page(off, authorize_params(client_id)))
    assert_oauth_error(redeem(off, client_id, "c", pkce()[0]), 401, "invalid_client")
    document = json.loads(off.handle_authorization_server_metadata(get(AS_METADATA)).body)
    assert "registration_endpoint" not in document


# ---------------------------------------------------------------------------------------------------------------
# dynamic registration bodies
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"", b"null", b"[]", b'"x"', b"1", b"{}", b"{", b"\xff\xfe{}", b'{"redirect_uris": "http://127.0.0.1/callback"}',
    b'{"redirect_uris": []}', b'{"redirect_uris": [1]}', b'{"redirect_uris": [null]}', b'{"redirect_uris": [[]]}',
    b'{"redirect_uris": [{}]}', b'{"redirect_uris": ["https://evil.example/cb"]}',
    json.dumps({"redirect_uris": ["http://127.0.0.1/callback"] * 11}).encode(),
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": "authorization_code"}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": ["implicit"]}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": ["refresh_token"]}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": ["authorization_code", "password"]}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "response_types": ["token"]}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "response_types": "code"}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "response_types": [["code"]]}',
])
def test_bad_registration_bodies_get_invalid_client_metadata(server: McpServer, body: bytes) -> None:
    response = server.handle_register(post(REGISTER, body, content_type="application/json"))
    assert response.status == 400, (response.status, response.body[:200])
    assert json.loads(response.body)["error"] in ("invalid_client_metadata", "invalid_redirect_uri")
    assert_clean_headers(response)


@pytest.mark.parametrize("body", [
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": [[]]}',
    b'{"redirect_uris": ["http://127.0.0.1/callback"], "grant_types": [{}]}',
    b'{"redirect_uris": ' + b"[" * 5000 + b"]" * 5000 + b"}",
], ids=["unhashable-grant-list", "unhashable-grant-object", "deeply-nested-json"])
def test_registration_bodies_that_crash_the_bridge_get_invalid_client_metadata(server: McpServer, body: bytes) -> None:
    """FINDING (medium): an unauthenticated POST /oauth/register makes the bridge fail with 500 (and a logged
    traceback). ``set(grants)`` raises TypeError for unhashable list items, and json.loads raises RecursionError for
    deep nesting; handle_register catches only ValueError and RegistrationError. Fix: shared/bridge/registration.py
    line 60: check ``all(isinstance(g, str) for g in grants)`` before ``set(grants)``; shared/bridge/bridge.py
    lines 182-187: also catch RecursionError (or parse with a depth-limited decoder) and answer
    invalid_client_metadata."""
    response = server.handle_register(post(REGISTER, body, content_type="application/json"))
    assert response.status == 400, (response.status, response.body[:200])
    # Python 3.13's json parses 5000 levels where 3.11's raises RecursionError: the nested redirect_uris are then
    # refused for what they are. Either way an RFC 7591 error, never a 500.
    expected = ("invalid_client_metadata", "invalid_redirect_uri") if b"[" * 100 in body else (
        "invalid_client_metadata",)
    assert json.loads(response.body)["error"] in expected


def test_registration_refuses_wrong_media_types_and_oversized_bodies(server: McpServer) -> None:
    good = json.dumps({"redirect_uris": ["http://127.0.0.1/callback"]}).encode()
    for content_type in ("text/plain", FORM, "application/jsonx", ""):
        assert_oauth_error(server.handle_register(post(REGISTER, good, content_type=content_type)), 400,
                           "invalid_client_metadata")
    huge = json.dumps({"redirect_uris": ["http://127.0.0.1/callback"], "x": "a" * 70000}).encode()
    assert_oauth_error(server.handle_register(post(REGISTER, huge, content_type="application/json")), 400,
                       "invalid_client_metadata")


def test_registration_never_issues_a_secret(server: McpServer) -> None:
    for method in ("client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"):
        response = server.handle_register(post(REGISTER, json.dumps({
            "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": method}).encode(),
            content_type="application/json"))
        assert response.status == 201
        body = json.loads(response.body)
        assert body["token_endpoint_auth_method"] == "none" and "client_secret" not in body


# ---------------------------------------------------------------------------------------------------------------
# client metadata documents from a hostile (but allowed) host
# ---------------------------------------------------------------------------------------------------------------


def _serve_document(url: str, **fields: Any) -> Callable[[BaseHTTPRequestHandler], None]:
    return lambda h: _send(h, 200, _document(url, **fields))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_metadata_document_redirects_are_not_followed(server: McpServer, hostile: HostileHost, status: int) -> None:
    start, target = f"/moved-{status}.json", f"/target-{status}.json"
    # The target claims to be the original client ID: following the redirect would make it acceptable.
    hostile.routes[start] = lambda h: _send(h, status, b"", {"Location": hostile.url(target)})
    hostile.routes[target] = _serve_document(hostile.url(start))
    assert_error_page(consent_page(server, authorize_params(hostile.url(start))))
    assert hostile.hits.get(start) == 1 and target not in hostile.hits


@pytest.mark.parametrize(("path", "behaviour"), [
    ("/not-json.json", lambda h: _send(h, 200, b"hello, not JSON")),
    ("/array.json", lambda h: _send(h, 200, b'[{"client_id": "x"}]')),
    ("/string.json", lambda h: _send(h, 200, b'"a string"')),
    ("/empty.json", lambda h: _send(h, 200, b"")),
    ("/binary.json", lambda h: _send(h, 200, b"\xff\xfe\x00\x01")),
    ("/status-404.json", lambda h: _send(h, 404, b"{}")),
    ("/status-500.json", lambda h: _send(h, 500, b"{}")),
    ("/status-204.json", lambda h: _send(h, 204, b"")),
    ("/oversized.json", lambda h: _send(h, 200, b'{"padding": "' + b"a" * 20000 + b'"}')),
    ("/endless.json", lambda h: _endless(h)),
])
def test_unusable_metadata_documents_get_an_error_page(server: McpServer, hostile: HostileHost, path: str,
                                                       behaviour: Callable[[BaseHTTPRequestHandler], None]) -> None:
    hostile.routes[path] = behaviour
    started = time.monotonic()
    assert_error_page(consent_page(server, authorize_params(hostile.url(path))))
    assert time.monotonic() - started < 8


def _endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    chunk = b" " * 65536
    for _ in range(512):  # 32 MiB at most, far more than the bridge may read
        handler.wfile.write(chunk)


@pytest.mark.parametrize("fields", [
    {"client_id": "https://vscode.dev/oauth/client-metadata.json"},
    {"client_id": None},
    {"client_id": ["x"]},
    {"token_endpoint_auth_method": "client_secret_basic"},
    {"token_endpoint_auth_method": "client_secret_post"},
    {"token_endpoint_auth_method": "private_key_jwt"},
    {"token_endpoint_auth_method": None},
    {"redirect_uris": []},
    {"redirect_uris": "http://127.0.0.1/callback"},
    {"redirect_uris": [1]},
    {"redirect_uris": [""]},
    {"redirect_uris": ["http://127.0.0.1/callback"] * 21},
], ids=lambda f: "-".join(f"{k}={str(v)[:20]}" for k, v in f.items()))
def test_metadata_documents_with_bad_fields_get_an_error_page(server: McpServer, hostile: HostileHost,
                                                              fields: dict[str, Any]) -> None:
    path = "/bad-" + hashlib.sha256(repr(fields).encode()).hexdigest()[:12] + ".json"
    hostile.routes[path] = _serve_document(hostile.url(path), **fields)
    assert_error_page(consent_page(server, authorize_params(hostile.url(path))))


def test_a_client_id_that_differs_from_the_document_url_only_in_spelling_is_refused(
    server: McpServer, hostile: HostileHost
) -> None:
    hostile.routes["/Spelled.json"] = _serve_document(hostile.url("/spelled.json"))
    assert_error_page(consent_page(server, authorize_params(hostile.url("/Spelled.json"))))
    port_443 = hostile.url("/Spelled.json").replace(hostile.netloc, hostile.netloc.upper())
    assert_error_page(consent_page(server, authorize_params(port_443)))


def test_a_metadata_host_that_never_answers_is_given_up_on_in_bounded_time(
    server: McpServer, hostile: HostileHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata_documents, "FETCH_TIMEOUT_SECONDS", 0.5)
    hostile.routes["/silent.json"] = lambda h: hostile.stop.wait(20)
    started = time.monotonic()
    assert_error_page(consent_page(server, authorize_params(hostile.url("/silent.json"))))
    assert time.monotonic() - started < 5


def test_a_metadata_document_dripped_a_byte_at_a_time_is_given_up_on_in_bounded_time(
    server: McpServer, hostile: HostileHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FINDING (low; needs a misbehaving allowed host): FETCH_TIMEOUT_SECONDS is urllib's per-socket-operation
    timeout, not a deadline. A host that sends a byte every half second (under the timeout) keeps the authorize
    request, and its worker thread, busy for as long as it likes: up to 16 KiB x 0.5 s, over two hours. Fix:
    shared/bridge/metadata_documents.py fetch_https (lines 42-54): read in chunks against a monotonic deadline
    (e.g. 5 s total) and give up when it passes."""
    monkeypatch.setattr(metadata_documents, "FETCH_TIMEOUT_SECONDS", 1.0)
    dripper = threading.Event()

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "16000")
        handler.end_headers()
        deadline = time.monotonic() + 60
        while not dripper.is_set() and not hostile.stop.is_set() and time.monotonic() < deadline:
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.3)

    hostile.routes["/drip.json"] = drip
    answer: list[HttpResponse] = []
    worker = threading.Thread(target=lambda: answer.append(
        consent_page(server, authorize_params(hostile.url("/drip.json")))), daemon=True)
    worker.start()
    try:
        worker.join(6)
        assert not worker.is_alive(), "the metadata fetch was still running after 6 s (timeout is 1 s)"
        assert_error_page(answer[0])
    finally:
        dripper.set()
        worker.join(10)


@pytest.mark.parametrize(("path", "behaviour"), [
    ("/garbage-status.json", lambda h: (h.wfile.write(b"NOT HTTP AT ALL\r\n\r\n"), h.wfile.flush())),
    ("/bad-chunks.json", lambda h: (h.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                                  b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n"),
                                    h.wfile.flush())),
    ("/nested.json", lambda h: _send(h, 200, b"[" * 6000 + b"]" * 6000)),
], ids=["bad-status-line", "bad-chunked-encoding", "deeply-nested-json"])
def test_malformed_metadata_responses_get_an_error_page_not_a_500(
    server: McpServer, hostile: HostileHost, path: str, behaviour: Callable[[BaseHTTPRequestHandler], None]
) -> None:
    """FINDING (low; needs a misbehaving allowed host): MetadataDocuments.resolve catches OSError, URLError and
    ValueError, but http.client raises HTTPException (BadStatusLine, IncompleteRead) for broken HTTP, and
    json.loads raises RecursionError for a 12 KB document of nested brackets; all three escape as a 500 from
    the authorize endpoint. Fix: shared/bridge/metadata_documents.py line 85 add http.client.HTTPException, and
    line 114-116 (_parse) catch RecursionError, both mapped to ClientError."""
    hostile.routes[path] = behaviour
    assert_error_page(consent_page(server, authorize_params(hostile.url(path))))


# ---------------------------------------------------------------------------------------------------------------
# PKCE, resource, scope at the authorization endpoint
# ---------------------------------------------------------------------------------------------------------------

# A fixed, well-formed S256 challenge (fixed so that test IDs are stable).
GOOD_CHALLENGE = b64url(hashlib.sha256(b"a-fixed-verifier-for-stable-test-ids-0123456789").digest())


@pytest.mark.parametrize("overrides", [
    {"code_challenge_method": "plain"},
    {"code_challenge_method": None},
    {"code_challenge_method": "s256"},
    {"code_challenge_method": "S512"},
    {"code_challenge_method": ""},
    {"code_challenge": None},
    {"code_challenge": ""},
    {"code_challenge": "a" * 42},
    {"code_challenge": "a" * 129},
    {"code_challenge": GOOD_CHALLENGE[:-1] + "+"},
    {"code_challenge": GOOD_CHALLENGE + "="},
    {"code_challenge": GOOD_CHALLENGE[:-1] + "\n"},
    {"code_challenge": "plain", "code_challenge_method": "plain"},
], ids=repr)
def test_pkce_must_be_s256(server: McpServer, dcr_loopback: str, overrides: dict[str, str | None]) -> None:
    params = authorize_params(dcr_loopback, challenge=GOOD_CHALLENGE, **overrides)
    response = consent_page(server, params)
    assert response.status == 302
    location = header(response, "location") or ""
    assert location.startswith(LOOPBACK + "?"), location
    query = redirect_query(response)
    assert query["error"] == "invalid_request" and query["state"] == "client-state-123" and "code" not in query


@pytest.mark.parametrize("resource", [
    "https://evil.example/mcp", RESOURCE + "/", RESOURCE.upper(), ISSUER, ISSUER + "/", "http://localhost:7071/mcp",
    "https://127.0.0.1:7071/mcp", RESOURCE + "?x=1", RESOURCE + "#x", "", "api://evil", RESOURCE + "\n",
])
def test_a_foreign_resource_at_authorize_is_invalid_target(server: McpServer, dcr_loopback: str,
                                                           resource: str) -> None:
    response = consent_page(server, authorize_params(dcr_loopback, resource=resource))
    assert response.status == 302 and (header(response, "location") or "").startswith(LOOPBACK)
    assert redirect_query(response)["error"] == "invalid_target"


def test_the_canonical_resource_or_none_is_accepted(server: McpServer, dcr_loopback: str) -> None:
    assert is_consent_page(consent_page(server, authorize_params(dcr_loopback, resource=RESOURCE)))
    assert is_consent_page(consent_page(server, authorize_params(dcr_loopback)))


@pytest.mark.parametrize("scope", [
    "https://graph.microsoft.com/User.Read", "User.Read Mail.Send:x", "api://other-app/user_impersonation",
    "https://evil.example/.default", " ".join(f"s{i}" for i in range(21)), "a/b",
])
def test_scopes_of_other_resources_are_invalid_scope(server: McpServer, dcr_loopback: str, scope: str) -> None:
    response = consent_page(server, authorize_params(dcr_loopback, scope=scope))
    assert response.status == 302 and redirect_query(response)["error"] == "invalid_scope"


# ---------------------------------------------------------------------------------------------------------------
# header and HTML injection
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["x\r\nSet-Cookie: pwn=1", "x\nLocation: https://evil.example", "x\r", "\x00",
                                   "x\u2028y", "x\x7f", "a" * 2049])
def test_state_with_control_characters_gets_an_error_page(server: McpServer, dcr_loopback: str, state: str) -> None:
    for params in (authorize_params(dcr_loopback, state=state),
                   authorize_params(dcr_loopback, state=state, response_type="token")):
        response = consent_page(server, params)
        assert_error_page(response)
        assert "pwn" not in json.dumps(dict(response.headers))


def test_odd_but_printable_state_is_carried_safely(server: McpServer, dcr_loopback: str) -> None:
    state = '"><script>alert(1)</script>&x=%0d%0a#frag'
    refused = consent_page(server, authorize_params(dcr_loopback, state=state, response_type="token"))
    assert_clean_headers(refused)
    assert redirect_query(refused)["state"] == state
    assert "#" not in (header(refused, "location") or "")
    page = consent_page(server, authorize_params(dcr_loopback, state=state))
    assert is_consent_page(page) and b"<script>" not in page.body
    assert consent_fields(page.body.decode())["state"] == state


def test_client_names_with_markup_are_escaped_on_the_consent_page(
    server: McpServer, metadata_host: MetadataHost
) -> None:
    evil = '"><script>alert(1)</script><img src=x onerror=alert(1)><a href="https://evil.example">Microsoft</a>'
    registered = register(server, ["http://127.0.0.1/callback"], name=evil)
    published = metadata_host.publish("/markup.json", ["http://127.0.0.1/callback"], name=evil)
    for client_id in (registered, published):
        page = consent_page(server, authorize_params(client_id))
        assert is_consent_page(page)
        text = page.body.decode()
        assert "<script" not in text and "<img" not in text and "<a " not in text
        assert "&lt;script&gt;" in text
    assert b"not verified" in consent_page(server, authorize_params(registered)).body


def test_client_names_with_line_breaks_never_reach_a_header(server: McpServer) -> None:
    client_id = register(server, ["http://127.0.0.1/callback"], name="Evil\r\nSet-Cookie: pwn=1\r\n\r\n<b>x</b>")
    for params in (authorize_params(client_id), authorize_params(client_id, response_type="token")):
        response = consent_page(server, params)
        assert_clean_headers(response)
        assert all("pwn" not in v for v in response.headers.values())


@pytest.mark.parametrize("name", ["\ud800", "Visual Studio Code \udfff", "\udc80\udc80"])
def test_a_client_name_with_lone_surrogates_does_not_crash_the_consent_page(server: McpServer, name: str) -> None:
    """FINDING (medium): JSON allows "\\ud800"; registration accepts it as client_name (201) and seals it into the
    client ID. Every authorize request for that client then fails with 500 (UnicodeEncodeError in
    shared/bridge/pages.py line 31, ``document.encode("utf-8")``). Anyone can mint such IDs, and a CIMD document
    can do the same. Fix: shared/bridge/registration.py line 66-67 (and metadata_documents.py _parse line 128-131)
    drop names that are not ``name.isprintable()`` or do not encode to UTF-8 (fall back to "Unnamed client"), and
    encode pages with errors="replace" in pages.py line 31."""
    response = server.handle_register(post(REGISTER, json.dumps({"redirect_uris": ["http://127.0.0.1/callback"],
                                                                 "client_name": name}).encode(),
                                           content_type="application/json"))
    if response.status == 400:
        return  # refusing the name at registration is a fine defence too
    assert response.status == 201
    client_id = json.loads(response.body)["client_id"]
    page = consent_page(server, authorize_params(client_id))
    assert page.status in (200, 400), (page.status, page.body[:200])


# ---------------------------------------------------------------------------------------------------------------
# the consent form: CSRF, replay, binding
# ---------------------------------------------------------------------------------------------------------------


def _page_and_fields(server: McpServer, params: Mapping[str, str],
                     cookie: str | None = None) -> tuple[str, dict[str, str]]:
    page = consent_page(server, params, cookie)
    assert is_consent_page(page)
    return (cookie_of(page) if header(page, "set-cookie") else cookie or ""), consent_fields(page.body.decode())


def test_the_consent_page_is_framing_proof_uncached_and_sets_a_host_only_cookie(
    server: McpServer, dcr_loopback: str
) -> None:
    page = consent_page(server, authorize_params(dcr_loopback))
    assert "frame-ancestors 'none'" in (header(page, "content-security-policy") or "")
    assert header(page, "x-frame-options") == "DENY" and header(page, "cache-control") == "no-store"
    # same-origin (not no-referrer, which makes browsers send Origin: null): the query never leaves the site
    assert header(page, "referrer-policy") in ("same-origin", "no-referrer", "strict-origin")
    assert header(page, "access-control-allow-origin") is None
    attributes = [a.strip().lower() for a in (header(page, "set-cookie") or "").split(";")]
    assert attributes[0].startswith("__host-mcp-sign-in=")
    assert {"path=/", "secure", "httponly", "samesite=lax"} <= set(attributes)
    assert not any(a.startswith("domain") for a in attributes)


def test_a_consent_post_without_the_cookie_is_refused(server: McpServer, dcr_loopback: str) -> None:
    _, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    # An opaque Origin ("null", e.g. a sandboxed frame) is left to the form token and cookie: without them, refused.
    for origin in (ISSUER, None, "null"):
        assert_error_page(decide(server, fields, cookie=None, origin=origin), 403)


def test_a_consent_post_with_another_browsers_cookie_is_refused(server: McpServer, dcr_loopback: str) -> None:
    _, fields_a = _page_and_fields(server, authorize_params(dcr_loopback))
    cookie_b, _ = _page_and_fields(server, authorize_params(dcr_loopback))
    for origin in (ISSUER, None, "null"):
        assert_error_page(decide(server, fields_a, cookie=cookie_b, origin=origin), 403)


def test_a_consent_post_with_a_forged_or_foreign_cookie_is_refused(
    server: McpServer, dcr_loopback: str, master_key: bytes
) -> None:
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    value = cookie.split("=", 1)[1]
    nonce = json.loads(base64_url_decode(value.split(".")[0]))["n"]
    for forged in (value[:-1], value + "A", "x." + value.split(".")[1],
                   Signer(master_key, "consent-form").seal({"n": nonce, "c": {}}),
                   Signer(b"k" * 32, "browser-state").seal({"n": nonce, "c": {}})):
        assert_error_page(decide(server, fields, cookie=f"{COOKIE_NAME}={forged}"), 403)


def base64_url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_form_token_is_bound_to_its_client_and_redirect_uri(server: McpServer, dcr_loopback: str) -> None:
    other = register(server, ["http://127.0.0.1/callback"])
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    for changed in ({"client_id": other}, {"redirect_uri": "http://127.0.0.1:9999/callback"},
                    {"redirect_uri": "http://localhost:8080/callback"}, {"form_token": ""},
                    {"form_token": fields["form_token"][:-1]}, {"form_token": None}):
        altered = {k: v for k, v in {**fields, **changed}.items() if v is not None}
        assert_error_page(decide(server, altered, cookie=cookie), 403)


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:7072", "http://localhost:7071",
                                    "http://127.0.0.1:7071.evil.example", "https://127.0.0.1:7071",
                                    "http://localhost:6274", ""])
def test_a_cross_site_consent_post_is_refused(server: McpServer, dcr_loopback: str, origin: str) -> None:
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    response = server.handle_authorize(post(AUTHORIZE, {**fields, "decision": "allow"},
                                            headers={"cookie": cookie, "origin": origin}))
    assert_error_page(response, 403)


def test_consent_form_bodies_that_cannot_be_read_get_an_error_page(server: McpServer, dcr_loopback: str) -> None:
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    body = urlencode({**fields, "decision": "allow"}).encode()
    for content_type, raw in (("multipart/form-data; boundary=x", body), ("application/json", body),
                              (FORM, body + b"&x=" + b"a" * 70000), (FORM, b"\xff\xfe=\xff")):
        response = server.handle_authorize(post(AUTHORIZE, raw, content_type=content_type,
                                                headers={"cookie": cookie, "origin": ISSUER}))
        assert_error_page(response, 400)
    for decision in ("", "ALLOW", "yes", "allow "):
        assert_error_page(decide(server, fields, cookie=cookie, decision=decision), 400)


def test_deny_goes_back_to_the_client_with_access_denied_and_remembers_nothing(
    server: McpServer, dcr_loopback: str
) -> None:
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    denied = decide(server, fields, cookie=cookie, decision="deny")
    assert denied.status == 302 and (header(denied, "location") or "").startswith(LOOPBACK)
    assert redirect_query(denied) == {"error": "access_denied", "error_description": "the user denied the request",
                                      "state": "client-state-123"}
    assert header(denied, "set-cookie") is None
    assert is_consent_page(consent_page(server, authorize_params(dcr_loopback), cookie))


def test_a_get_with_decision_fields_never_approves(server: McpServer, dcr_loopback: str) -> None:
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    response = consent_page(server, {**fields, "decision": "allow"}, cookie)
    assert is_consent_page(response)


def test_consent_is_never_skipped_for_a_new_client(server: McpServer, dcr_loopback: str,
                                                   metadata_host: MetadataHost) -> None:
    _, cookie = allow(server, authorize_params(dcr_loopback))
    skipped = consent_page(server, authorize_params(dcr_loopback), cookie)
    # remembered for the same client: documented behaviour
    assert skipped.status == 302 and (header(skipped, "location") or "").startswith(server.settings.authority_host)
    same_name = register(server, ["http://127.0.0.1/callback", "http://localhost/callback"])  # same URIs, new id
    document = metadata_host.publish("/a.json", ["http://127.0.0.1/callback"])
    variant = metadata_host.publish("/a.json?v=2", ["http://127.0.0.1/callback"])
    for client_id in (same_name, document, variant):
        assert is_consent_page(consent_page(server, authorize_params(client_id), cookie)), client_id
    _, cookie = allow(server, authorize_params(document), cookie)
    assert is_consent_page(consent_page(server, authorize_params(variant), cookie))


def test_an_expired_or_foreign_remembered_consent_is_not_honoured(
    server: McpServer, dcr_loopback: str, master_key: bytes
) -> None:
    nonce = "n" * 24
    past = {client_key(dcr_loopback, LOOPBACK): int(time.time()) - 1}
    future = {client_key(dcr_loopback, LOOPBACK): int(time.time()) + 3600}
    for cookie_value in (Signer(master_key, "browser-state").seal({"n": nonce, "c": past}),
                         Signer(master_key, "consent-form").seal({"n": nonce, "c": future}),
                         Signer(b"x" * 32, "browser-state").seal({"n": nonce, "c": future}),
                         Signer(master_key, "browser-state").seal({"n": "short", "c": future}),
                         Signer(master_key, "browser-state").seal(
                             {"n": nonce, "c": {client_key(dcr_loopback, LOOPBACK): 1e12}})):
        page = consent_page(server, authorize_params(dcr_loopback), f"{COOKIE_NAME}={cookie_value}")
        assert is_consent_page(page)


@pytest.mark.parametrize(("field", "value"), [("code_challenge", GOOD_CHALLENGE),
                                              ("scope", "openid profile email user_impersonation")],
                         ids=["code_challenge", "scope"])
def test_a_consent_decision_cannot_be_replayed_with_altered_request_fields(
    server: McpServer, dcr_loopback: str, field: str, value: str
) -> None:
    """FINDING (low, defence in depth): the form token is MAC(browser nonce, client_id, redirect_uri) only. It never
    expires (the nonce lives for the cookie's 30 days and is re-set on every Allow) and it does not cover
    code_challenge, scope or state, so a captured consent POST can be replayed by that browser with another PKCE
    challenge or other scopes and is approved without the page being shown again. Fix: shared/bridge/browser.py
    form_token (line 58-59) and bridge.py lines 133 / 142: MAC every forwarded field (AUTHORIZE_PARAMETERS) plus an
    issued-at time, and refuse tokens older than a few minutes (bridge.py line 142)."""
    cookie, fields = _page_and_fields(server, authorize_params(dcr_loopback))
    assert fields.get(field) != value
    replayed = decide(server, {**fields, field: value}, cookie=cookie)
    assert_error_page(replayed, 403)


def test_remembered_consent_does_not_cover_a_redirect_uri_the_user_was_never_shown(server: McpServer) -> None:
    """FINDING (medium): consent is remembered per client_id only, but the consent page says "After you sign in you
    will be sent to <redirect_uri>". A self-registered client (anyone can register one) lists a loopback URI and a
    server-side one (claude.ai's connector callback); the user allows it for the loopback URI, and later a link with
    the *other* redirect URI is forwarded to Entra with no page at all. Fix: shared/bridge/browser.py
    has_consented / remember_consent (lines 44-52) and bridge.py lines 130 and 154: key the remembered consent on
    (client_id, redirect_uri with a loopback port removed), at least for registered clients."""
    client_id = register(server, ["http://127.0.0.1/callback", CLAUDE_CALLBACK], name="Handy tool")
    _, cookie = allow(server, authorize_params(client_id, LOOPBACK))
    later = consent_page(server, authorize_params(client_id, CLAUDE_CALLBACK), cookie)
    assert is_consent_page(later), (later.status, header(later, "location"))


# ---------------------------------------------------------------------------------------------------------------
# the token endpoint
# ---------------------------------------------------------------------------------------------------------------


def _token(server: McpServer, fields: Mapping[str, str], **kwargs: Any) -> HttpResponse:
    return server.handle_token(post(TOKEN, fields, **kwargs))


def test_the_token_endpoint_refuses_bodies_it_cannot_read(server: McpServer, entra: FakeEntra,
                                                          dcr_loopback: str) -> None:
    fields = urlencode({"grant_type": "refresh_token", "client_id": dcr_loopback, "refresh_token": "rt"}).encode()
    for content_type, raw in (("application/json", json.dumps({"grant_type": "refresh_token"}).encode()),
                              ("text/plain", fields), ("multipart/form-data; boundary=x", fields), ("", fields),
                              (FORM, fields + b"&pad=" + b"a" * 70000), (FORM, b"grant_type=\xff\xfe")):
        response = server.handle_token(post(TOKEN, raw, content_type=content_type))
        body = assert_oauth_error(response, 400, "invalid_request")
        assert body["error_description"]
        assert header(response, "cache-control") == "no-store"
    for method in ("GET", "PUT", "DELETE"):
        assert server.handle_token(get(TOKEN, method=method)).status == 405
    assert entra.token_requests == []


@pytest.mark.parametrize("grant", ["password", "client_credentials", "implicit", "", "AUTHORIZATION_CODE",
                                   "urn:ietf:params:oauth:grant-type:device_code",
                                   "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "urn:ietf:params:oauth:grant-type:token-exchange"])
def test_unsupported_grants_are_refused_without_asking_entra(server: McpServer, entra: FakeEntra,
                                                             dcr_loopback: str, grant: str) -> None:
    response = _token(server, {"grant_type": grant, "client_id": dcr_loopback, "username": "alice",
                               "password": "pw", "assertion": "a.b.c", "refresh_token": "rt"})
    assert_oauth_error(response, 400, "unsupported_grant_type")
    assert entra.token_requests == []


def test_client_secrets_and_missing_client_ids_are_invalid_client(server: McpServer, entra: FakeEntra,
                                                                  dcr_loopback: str) -> None:
    base = {"grant_type": "refresh_token", "refresh_token": "rt"}
    for extra in ({"client_id": dcr_loopback, "client_secret": "s3cret"},
                  {"client_id": dcr_loopback, "client_assertion": "eyJhbGciOi.x.y",
                   "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                  {}, {"client_id": ""}, {"client_id": "https://evil.example/client.json"},
                  {"client_id": BRIDGE_CLIENT_ID}):
        assert_oauth_error(_token(server, {**base, **extra}), 401, "invalid_client")
    assert entra.token_requests == []


def test_code_requests_missing_parts_are_refused_without_asking_entra(server: McpServer, entra: FakeEntra,
                                                                      dcr_loopback: str) -> None:
    full = {"grant_type": "authorization_code", "client_id": dcr_loopback, "code": "c", "redirect_uri": LOOPBACK,
            "code_verifier": pkce()[0]}
    for missing in ("code", "redirect_uri", "code_verifier"):
        assert_oauth_error(_token(server, {k: v for k, v in full.items() if k != missing}), 400, "invalid_request")
        assert_oauth_error(_token(server, {**full, missing: ""}), 400, "invalid_request")
    assert_oauth_error(_token(server, {"grant_type": "refresh_token", "client_id": dcr_loopback}), 400,
                       "invalid_request")
    for redirect_uri in ("https://evil.example/cb", "http://127.0.0.1:8080/other", "http://127.0.0.1@evil.example/",
                         "http://localhost:8080/oauth/callback"):
        assert_oauth_error(_token(server, {**full, "redirect_uri": redirect_uri}), 400, "invalid_grant")
    for resource in ("https://evil.example/mcp", RESOURCE + "/", ""):
        assert_oauth_error(_token(server, {**full, "resource": resource}), 400, "invalid_target")
        assert_oauth_error(_token(server, {"grant_type": "refresh_token", "client_id": dcr_loopback,
                                           "refresh_token": "rt", "resource": resource}), 400, "invalid_target")
    assert_oauth_error(_token(server, {**full, "scope": "https://graph.microsoft.com/User.Read"}), 400,
                       "invalid_scope")
    assert entra.token_requests == []


def test_entra_refusals_are_relayed_as_400_json(server: McpServer, entra: FakeEntra, dcr_loopback: str) -> None:
    register_bridge_app(entra)
    bogus = redeem(server, dcr_loopback, "fake-code-bogus", pkce()[0])
    body = assert_oauth_error(bogus, 400, "invalid_grant")
    assert body["error_description"].startswith("AADSTS70008") and set(body) == {"error", "error_description"}
    code, verifier, _ = sign_in(server, entra, dcr_loopback)
    wrong = redeem(server, dcr_loopback, code, pkce()[0])
    assert assert_oauth_error(wrong, 400, "invalid_grant")["error_description"].startswith("AADSTS501481")
    good = redeem(server, dcr_loopback, code, verifier, resource=RESOURCE)
    assert good.status == 200, good.body
    again = redeem(server, dcr_loopback, code, verifier)
    assert assert_oauth_error(again, 400, "invalid_grant")["error_description"].startswith("AADSTS54005")
    refresh = _token(server, {"grant_type": "refresh_token", "client_id": dcr_loopback, "refresh_token": "nope"})
    assert_oauth_error(refresh, 400, "invalid_grant")
    assert all(r["client_id"] == BRIDGE_CLIENT_ID and "resource" not in r for r in entra.token_requests)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (500, {"error": "server_error"}, 503),
    (503, "<html>down</html>", 503),
    (200, "a JSON string, not an object", 400),
    (200, {"token_type": "Bearer"}, 400),
    (401, {"error": "invalid_client", "error_description": "AADSTS7000218: x"}, 400),
    (429, {"error": "temporarily_unavailable"}, 400),
    (400, [1, 2, 3], 400),
    (400, {"error": 5, "error_description": {"x": 1}}, 400),
    (400, {"error": "e" * 500, "error_description": "d" * 5000}, 400),
])
def test_odd_entra_answers_never_become_a_500(server: McpServer, entra: FakeEntra, dcr_loopback: str,
                                              status: int, body: Any, expected: int) -> None:
    entra.queue_token_response(status, body)
    response = _token(server, {"grant_type": "refresh_token", "client_id": dcr_loopback, "refresh_token": "rt"})
    assert response.status == expected, response.body
    answer = json.loads(response.body)
    assert set(answer) == {"error", "error_description"}
    assert len(answer["error"]) <= 100 and len(answer["error_description"]) <= 1000


def test_only_token_fields_are_relayed_from_entra(server: McpServer, entra: FakeEntra, dcr_loopback: str) -> None:
    entra.queue_token_response(200, {"token_type": "Bearer", "access_token": "at", "expires_in": 3600,
                                     "client_info": "eyJ1aWQiOiJ4In0", "foci": "1", "trace_id": "t",
                                     "refresh_token_expires_in": 1})
    response = _token(server, {"grant_type": "refresh_token", "client_id": dcr_loopback, "refresh_token": "rt"})
    assert response.status == 200
    assert set(json.loads(response.body)) == {"token_type", "access_token", "expires_in"}
    assert header(response, "cache-control") == "no-store"


def _bridge_against(fake: FakeEntra, authority: str) -> SignInBridge:
    return SignInBridge(load_settings(bridge_env(fake, AZURE_AUTHORITY_HOST=authority)), server_name="t")


def _refresh_request(client_id: str) -> HttpRequest:
    return post(TOKEN, {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": "rt"})


def test_entra_down_is_503_at_once(fake_entra: FakeEntra, dcr_loopback: str) -> None:
    bridge = _bridge_against(fake_entra, f"https://127.0.0.1:{free_port()}")
    started = time.monotonic()
    response = bridge.handle_token(_refresh_request(dcr_loopback), ISSUER, RESOURCE)
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert time.monotonic() - started < 5


def test_a_slow_entra_is_503_not_a_hang(server: McpServer, entra: FakeEntra, dcr_loopback: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_token, "UPSTREAM_TIMEOUT_SECONDS", 0.5)
    entra.token_delay_seconds = 3
    started = time.monotonic()
    response = server.handle_token(_refresh_request(dcr_loopback))
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert time.monotonic() - started < 2.5


def _raise(exc: BaseException) -> Callable[[str, Mapping[str, str]], tuple[int, bytes]]:
    def post(url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
        raise exc

    return post


@pytest.mark.parametrize("post_form", [
    _raise(ConnectionResetError("reset by peer")), _raise(TimeoutError("timed out")),
    lambda url, form: (200, b"<html>not JSON</html>"), lambda url, form: (200, b"\xff\xfe"),
    lambda url, form: (502, b""), lambda url, form: (200, b'{"access_token": 5}' + b" " * 70000),
], ids=["reset", "timeout", "html", "not-utf8", "502-empty", "oversized"])
def test_an_unusable_entra_answer_is_503(fake_entra: FakeEntra, dcr_loopback: str,
                                         post_form: Callable[[str, Mapping[str, str]], tuple[int, bytes]]) -> None:
    bridge = SignInBridge(load_settings(bridge_env(fake_entra)), server_name="t", post=post_form)
    response = bridge.handle_token(_refresh_request(dcr_loopback), ISSUER, RESOURCE)
    assert response.status in (400, 503), response.body
    assert json.loads(response.body)["error"] in ("temporarily_unavailable", "invalid_grant")


def test_a_garbled_answer_from_the_entra_endpoint_is_503_not_500(fake_entra: FakeEntra, dcr_loopback: str) -> None:
    """FINDING (low): post_form turns transport failures into OSError, but a peer that answers with something that
    is not HTTP (a captive proxy, a broken middlebox, a wrong AZURE_AUTHORITY_HOST) raises http.client.BadStatusLine,
    an HTTPException, which TokenExchange._relay does not catch: the pipeline answers 500 server_error instead of
    503 temporarily_unavailable. Fix: shared/bridge/token.py line 125: catch http.client.HTTPException as well."""
    with HostileHost() as garbage:
        garbage.default = lambda h: (h.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), h.wfile.flush())
        server = McpServer(load_settings(bridge_env(fake_entra, AZURE_AUTHORITY_HOST=f"https://{garbage.netloc}")),
                           forker_tools.tools)
        response = server.handle_token(post(TOKEN, {"grant_type": "refresh_token", "client_id": dcr_loopback,
                                                    "refresh_token": "rt"}))
        assert_oauth_error(response, 503, "temporarily_unavailable")


def test_a_code_issued_through_one_client_is_refused_to_another(
    server: McpServer, entra: FakeEntra, metadata_host: MetadataHost
) -> None:
    """FINDING (medium): RFC 6749 §4.1.3 requires the token endpoint to make sure a public client's code was issued
    to the client_id in the request. Every code comes from Entra for the bridge's one client ID, and the bridge
    keeps no record, so a code obtained through client A (the one the user consented to) is redeemed as client B
    whenever both list the same redirect URI; the consent check is only as strong as "some client with this
    redirect URI". Fix (stateless): bind the code to the client through PKCE. In Authorization.entra_url
    (shared/bridge/authorize.py lines 56-68) send Entra code_challenge = S256(v') with
    v' = b64url(HMAC(k, client_id | redirect_uri | client_challenge)); in token.py line 114 recompute
    v' from the request's client_id, redirect_uri and S256(code_verifier) and send that as code_verifier. A code
    then only redeems for the client and redirect URI it was consented for, and only through this bridge."""
    register_bridge_app(entra)
    consented = metadata_host.publish("/trusted.json", ["http://127.0.0.1/callback"], name="Trusted")
    other = register(server, ["http://127.0.0.1/callback"], name="Never consented")
    code, verifier, _ = sign_in(server, entra, consented)
    response = redeem(server, other, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")


# ---------------------------------------------------------------------------------------------------------------
# the confused deputy (FastMCP GHSA-c2jp-c369-7pvx, CVE-2026-27124 / GHSA-rww4-4w9c-7733)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["captured-from-the-bridge", "written-by-hand"])
def test_consent_cannot_be_bypassed_by_sending_the_victim_straight_to_entra(entra: FakeEntra, how: str) -> None:
    """FINDING (high): the CVE-2026-27124 pattern. The bridge's consent is checked on the way *to* Entra, but Entra
    sends the code straight back to the client's redirect URI, so nothing ties the returning browser to the one that
    consented. The bridge's Entra app is pre-authorized (no Entra consent prompt) and registers a server-side third
    party callback (https://claude.ai/api/mcp/auth_callback). An attacker starts a claude.ai connector flow against
    this server, allows their own registered client in their own browser, and captures the Entra authorize URL (it
    is in the bridge's Location header; it can also be written by hand: the bridge's client ID is public). A victim
    signed in to Entra who opens it is sent, silently, to claude.ai's callback with a code and the attacker's state;
    claude.ai redeems it at /oauth/token for the attacker's connector, which now acts as the victim. Fix: make the
    bridge the only redirect URI of its Entra app ({origin}/oauth/entra-callback; infra/modules/entra-bridge-app.bicep
    redirectUris and shared/settings.py DEFAULT_BRIDGE_REDIRECT_URIS line 25) and send Entra a sealed state carrying
    the client, its redirect URI and state and the consenting browser's cookie nonce (bridge.py lines 130-158,
    authorize.py entra_url); the new callback refuses (403) unless the __Host- cookie's nonce matches, then
    redirects to the client with the code; token.py sends Entra the callback URI as redirect_uri (line 111-114).
    FastMCP 3.2.0 fixed its proxy the same way (consent binding cookie). Until then, at least drop server-side
    redirect URIs such as claude.ai's from the defaults."""
    register_bridge_app(entra)
    server = bridged_server(entra)
    with serving(server) as harness:
        registration = requests.post(harness.url + REGISTER, json={"redirect_uris": [CLAUDE_CALLBACK],
                                                                   "client_name": "Claude"}, timeout=10)
        assert registration.status_code == 201
        client_id = registration.json()["client_id"]
        verifier, challenge = pkce()
        attacker, victim = Browser(entra), Browser(entra)
        query = urlencode(authorize_params(client_id, CLAUDE_CALLBACK, challenge, state="attackers-connector"))
        page = attacker.get(f"{harness.url}{AUTHORIZE}?{query}")
        assert page.status_code == 200
        decision = attacker.post_form(harness.url + AUTHORIZE, {**consent_fields(page.text), "decision": "allow"},
                                      origin=harness.url)
        captured = decision.headers["Location"]
        assert captured.startswith(entra.authority)
        if how == "written-by-hand":  # no bridge needed at all: the bridge's client ID is public
            captured = entra.authorize_endpoint + "?" + urlencode({
                "client_id": BRIDGE_CLIENT_ID, "response_type": "code", "redirect_uri": CLAUDE_CALLBACK,
                "scope": f"{entra.app_id_uri}/user_impersonation offline_access", "code_challenge": challenge,
                "code_challenge_method": "S256", "state": "attackers-connector"})

        # The victim opens the link: their browser never showed the bridge's consent page.
        location, hops = captured, 0
        while hops < 6 and location.startswith((entra.authority, harness.url)):
            response = victim.get(location)
            if response.status_code != 302:
                break
            location, hops = response.headers["Location"], hops + 1
        assert victim.consent_pages == 0
        code = parse_qs(urlsplit(location).query).get("code", [None])[0] if location.startswith(
            CLAUDE_CALLBACK) else None
        if code is None:
            return  # the code never reached the attacker's callback: defended
        tokens = requests.post(harness.url + TOKEN, data={
            "grant_type": "authorization_code", "client_id": client_id, "code": code,
            "redirect_uri": CLAUDE_CALLBACK, "code_verifier": verifier}, timeout=10)
        assert tokens.status_code != 200, (
            "a browser that never saw the bridge's consent page handed the user's tokens to the attacker's client: "
            f"{sorted(tokens.json())}")


# ---------------------------------------------------------------------------------------------------------------
# logs, Host, bridge off, discovery
# ---------------------------------------------------------------------------------------------------------------


def test_a_full_sign_in_logs_no_code_verifier_or_token(entra: FakeEntra, metadata_host: MetadataHost) -> None:
    register_bridge_app(entra)
    server = bridged_server(entra, MCP_BRIDGE_CLIENT_METADATA_HOSTS=f"vscode.dev,{metadata_host.netloc}")
    document = metadata_host.publish("/logged.json", ["http://127.0.0.1/callback"], name="Logged client")
    secrets: list[str] = []
    with capture_all_logs() as logs:
        registered = register(server, ["http://127.0.0.1/callback"])
        for client_id in (document, registered):
            verifier, challenge = pkce()
            page = consent_page(server, authorize_params(client_id, challenge=challenge))
            cookie = cookie_of(page)
            fields = consent_fields(page.body.decode())
            answer = decide(server, fields, cookie=cookie)
            back = entra_get(entra, header(answer, "location") or "")
            code = parse_qs(urlsplit(back).query)["code"][0]
            # a wrong verifier first (Entra's refusal is logged), then the right one, then the code again
            assert redeem(server, client_id, code, pkce()[0]).status == 400
            granted = redeem(server, client_id, code, verifier)
            assert granted.status == 200, granted.body
            assert redeem(server, client_id, code, verifier).status == 400
            tokens = json.loads(granted.body)
            refreshed = _token(server, {"grant_type": "refresh_token", "client_id": client_id,
                                        "refresh_token": tokens["refresh_token"], "scope": "openid"})
            assert refreshed.status == 200, refreshed.body
            more = json.loads(refreshed.body)
            assert _token(server, {"grant_type": "refresh_token", "client_id": client_id,
                                   "refresh_token": tokens["refresh_token"] + "x"}).status == 400
            whoami = server.handle_mcp(HttpRequest("POST", ISSUER + "/mcp", {
                "host": HOST, "content-type": "application/json", "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2025-11-25", "authorization": f"Bearer {more['access_token']}"},
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                            "params": {"name": "whoami", "arguments": {}}}).encode()))
            assert whoami.status == 200, whoami.body
            secrets += [code, verifier, fields["form_token"], cookie.split("=", 1)[1],
                        *(v for k, v in {**tokens, **more}.items() if k in (
                            "access_token", "refresh_token", "id_token"))]
    text = logs.text()
    assert "Sign-in bridge" in text  # the capture saw the bridge
    for secret in secrets:
        assert secret not in text, f"a secret of {len(secret)} characters reached the logs"
    assert not JWT_LIKE.search(text), JWT_LIKE.search(text)


_ROUTES: list[tuple[str, Callable[[McpServer, HttpRequest], HttpResponse]]] = [
    (AS_METADATA, McpServer.handle_authorization_server_metadata),
    (AUTHORIZE, McpServer.handle_authorize),
    (TOKEN, McpServer.handle_token),
    (REGISTER, McpServer.handle_register),
]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7071", "127.0.0.1@evil.example",
                                  "localhost.evil.example", "127.0.0.1.nip.io:7071", "mcp.contoso.example.evil",
                                  "[::2]:7071", "0.0.0.0:7071"])
def test_a_host_that_is_not_ours_is_421_on_every_bridge_route(fake_entra: FakeEntra, server: McpServer,
                                                              host: str) -> None:
    public = bridged_server(fake_entra, MCP_PUBLIC_BASE_URL="https://mcp.contoso.example")
    for candidate in (server, public):
        for path, handle in _ROUTES:
            for method in ("GET", "POST", "OPTIONS"):
                response = handle(candidate, HttpRequest(method, f"http://{host}{path}", {"host": host}, b"",
                                                         query={}))
                assert response.status == 421, (path, method, response.status)
                assert json.loads(response.body)["error"] == "invalid_request"


def test_the_public_host_gets_the_public_issuer(fake_entra: FakeEntra) -> None:
    public = bridged_server(fake_entra, MCP_PUBLIC_BASE_URL="https://mcp.contoso.example")
    for host in ("mcp.contoso.example", "mcp.contoso.example:443"):
        document = json.loads(public.handle_authorization_server_metadata(get(AS_METADATA, host=host)).body)
        assert document["issuer"] == "https://mcp.contoso.example"
        prm = json.loads(public.handle_metadata(get("/.well-known/oauth-protected-resource/mcp", host=host)).body)
        assert prm["authorization_servers"] == ["https://mcp.contoso.example"]


def test_bridge_off_is_404_on_every_bridge_route(fake_entra: FakeEntra) -> None:
    plain = McpServer(load_settings(settings_env(fake_entra)), forker_tools.tools)
    assert plain.bridge is None
    for path, handle in _ROUTES:
        for method in ("GET", "POST", "OPTIONS"):
            response = handle(plain, HttpRequest(method, ISSUER + path, {"host": HOST,
                                                                         "content-type": "application/json"},
                                                 b"{}", query={}))
            assert response.status == 404 and json.loads(response.body)["error"] == "not_found", (path, method)
    assert function_app.server.bridge is None
    with FunctionsHarness(function_app.app) as harness:
        for path, _ in _ROUTES:
            for method in ("GET", "POST", "OPTIONS"):
                answer = requests.request(method, harness.url + path, timeout=10)
                assert answer.status_code == 404, (path, method, answer.status_code)


def test_the_prm_names_the_app_when_the_bridge_is_on_and_entra_when_off(fake_entra: FakeEntra,
                                                                       server: McpServer) -> None:
    for root, path in ((False, "/.well-known/oauth-protected-resource/mcp"),
                       (True, "/.well-known/oauth-protected-resource")):
        on = json.loads(server.handle_metadata(get(path), root=root).body)
        assert on["authorization_servers"] == [ISSUER]
        plain = McpServer(load_settings(settings_env(fake_entra)), forker_tools.tools)
        off = json.loads(plain.handle_metadata(get(path), root=root).body)
        assert off["authorization_servers"] == [plain.settings.authorization_server]
        assert off["authorization_servers"][0].startswith(fake_entra.authority)
    document = json.loads(server.handle_authorization_server_metadata(get(AS_METADATA)).body)
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == ISSUER + AUTHORIZE and document["token_endpoint"] == ISSUER + TOKEN
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["none"]
    assert document["response_types_supported"] == ["code"]
    assert "authorization_response_iss_parameter_supported" not in document
    assert document["registration_endpoint"] == ISSUER + REGISTER


def test_the_bridge_over_sockets_refuses_a_lookalike_redirect_without_a_location(
    entra: FakeEntra, metadata_host: MetadataHost
) -> None:
    register_bridge_app(entra)
    server = bridged_server(entra, MCP_BRIDGE_CLIENT_METADATA_HOSTS=f"vscode.dev,{metadata_host.netloc}")
    client_id = metadata_host.publish("/socket.json", ["http://127.0.0.1/callback"])
    with serving(server) as harness:
        browser = Browser(entra)
        for redirect_uri in ("http://127.0.0.1@evil.example/callback", "http://127.0.0.1.evil.example/callback"):
            query = urlencode(authorize_params(client_id, redirect_uri, response_type="token"))
            response = browser.get(f"{harness.url}{AUTHORIZE}?{query}")
            assert response.status_code == 400 and "Location" not in response.headers
        bad_host = requests.get(harness.url + AS_METADATA, headers={"Host": "evil.example"}, timeout=10)
        assert bad_host.status_code == 421
        answer = browser.sign_in(f"{harness.url}{AUTHORIZE}?" + urlencode(authorize_params(client_id)))
        assert answer["_location"].startswith(LOOPBACK) and "code" in answer
    assert entra.authorize_requests[-1]["client_id"] == BRIDGE_CLIENT_ID
