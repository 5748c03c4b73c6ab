"""The sign-in bridge, unit by unit and through the pipeline (no sockets): settings, redirect matching, scopes,
registration, metadata documents, the browser cookie, the metadata routes and the token exchange.

End-to-end sign-ins with real clients are in test_bridge_clients.py; the hostile suite in test_bridge_attacks.py.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import tools as forker_tools
from bridge_support import BRIDGE_CLIENT_ID, bridge_env, bridged_server
from conftest import ALLOWED_CLIENT_IDS
from fake_entra import FakeEntra
from shared.bridge.browser import BrowserState
from shared.bridge.clients import ClientError
from shared.bridge.metadata_documents import MetadataDocuments
from shared.bridge.redirects import redirect_matches
from shared.bridge.registration import Registrations
from shared.bridge.scopes import ScopeError, ScopeMap
from shared.bridge.signing import Signer
from shared.http.messages import HttpRequest
from shared.http.pipeline import McpServer
from shared.settings import DEFAULT_BRIDGE_REDIRECT_URIS, SettingsError, load_settings

BASE = "http://localhost:7071"
KEY = b"k" * 32


def get(path: str, **headers: str) -> HttpRequest:
    return HttpRequest("GET", BASE + path, {"host": "localhost:7071", **headers})


# == settings ======================================================================================


def test_the_bridge_is_off_without_its_client_id(app_env: dict[str, str]) -> None:
    settings = load_settings(app_env)
    assert not settings.bridge.enabled
    assert settings.bridge.redirect_uris == DEFAULT_BRIDGE_REDIRECT_URIS
    assert settings.bridge.client_metadata_hosts == {"vscode.dev", "claude.ai"}
    assert settings.bridge.dynamic_registration is True


def test_bridge_settings_are_read(entra: FakeEntra) -> None:
    settings = load_settings(bridge_env(entra, MCP_BRIDGE_REDIRECT_URIS="http://127.0.0.1/cb, https://app.example/cb",
                                        MCP_BRIDGE_CLIENT_METADATA_HOSTS="VSCode.dev,127.0.0.1:8443",
                                        MCP_BRIDGE_DYNAMIC_REGISTRATION="false"))
    assert settings.bridge.enabled and settings.bridge.client_id == BRIDGE_CLIENT_ID
    assert settings.bridge.redirect_uris == ("http://127.0.0.1/cb", "https://app.example/cb")
    assert settings.bridge.client_metadata_hosts == {"vscode.dev", "127.0.0.1:8443"}
    assert settings.bridge.dynamic_registration is False


@pytest.mark.parametrize(("extra", "name"), [
    ({"ENTRA_BRIDGE_CLIENT_ID": "not-a-guid"}, "ENTRA_BRIDGE_CLIENT_ID"),
    ({"ENTRA_ALLOWED_CLIENT_IDS": ALLOWED_CLIENT_IDS}, "ENTRA_ALLOWED_CLIENT_IDS"),
    ({"MCP_BRIDGE_REDIRECT_URIS": "http://evil.example/cb"}, "MCP_BRIDGE_REDIRECT_URIS"),
    ({"MCP_BRIDGE_REDIRECT_URIS": "https://app.example/cb#x"}, "MCP_BRIDGE_REDIRECT_URIS"),
    ({"MCP_BRIDGE_REDIRECT_URIS": "https://user@app.example/cb"}, "MCP_BRIDGE_REDIRECT_URIS"),
    ({"MCP_BRIDGE_CLIENT_METADATA_HOSTS": "https://vscode.dev"}, "MCP_BRIDGE_CLIENT_METADATA_HOSTS"),
    ({"MCP_BRIDGE_CLIENT_METADATA_HOSTS": "127.0.0.1:8443", "WEBSITE_HOSTNAME": "app.azurewebsites.net"},
     "MCP_BRIDGE_CLIENT_METADATA_HOSTS"),
    ({"MCP_BRIDGE_DYNAMIC_REGISTRATION": "yes"}, "MCP_BRIDGE_DYNAMIC_REGISTRATION"),
])
def test_bad_bridge_settings_are_named(entra: FakeEntra, extra: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(bridge_env(entra, **extra))
    assert name in caught.value.problems, caught.value.problems


# == units =========================================================================================


@pytest.mark.parametrize(("registered", "requested", "ok"), [
    ("http://127.0.0.1/callback", "http://127.0.0.1:53682/callback", True),
    ("http://127.0.0.1/callback", "http://127.0.0.1/callback", True),
    ("http://localhost/oauth/callback", "http://localhost:6274/oauth/callback", True),
    ("http://127.0.0.1/", "http://127.0.0.1:33418/", True),
    ("http://127.0.0.1/callback", "http://127.0.0.1:53682/callback/", False),
    ("http://127.0.0.1/callback", "http://localhost:53682/callback", False),
    ("http://127.0.0.1/callback", "https://127.0.0.1:53682/callback", False),
    ("http://127.0.0.1/callback", "http://127.0.0.1:99999/callback", False),
    ("http://127.0.0.1/callback", "http://127.0.0.1:1/callback?x=1", False),
    ("http://127.0.0.1/callback", "http://127.0.0.1:1/callback#x", False),
    ("http://127.0.0.1/callback", "http://user@127.0.0.1:1/callback", False),
    ("https://vscode.dev/redirect", "https://vscode.dev/redirect", True),
    ("https://vscode.dev/redirect", "https://vscode.dev:443/redirect", False),
    ("https://vscode.dev/redirect", "https://VSCODE.dev/redirect", False),
])
def test_redirect_matching(registered: str, requested: str, ok: bool) -> None:
    assert redirect_matches(registered, requested) is ok


def test_scope_map() -> None:
    scopes = ScopeMap("api://t/app", ["user_impersonation"])
    assert scopes.to_entra(None) == ("api://t/app/user_impersonation", "offline_access")
    assert scopes.to_entra("api://t/app/user_impersonation") == ("api://t/app/user_impersonation", "offline_access")
    assert scopes.to_entra("Orders.Write openid") == ("api://t/app/Orders.Write", "openid", "offline_access")
    assert scopes.to_entra("openid") == ("api://t/app/user_impersonation", "openid", "offline_access")
    for foreign in ("https://graph.microsoft.com/User.Read", "api://other/x", "a b" * 30, "api://t/app/x/y"):
        with pytest.raises(ScopeError):
            scopes.to_entra(foreign)


def test_registration_round_trip_and_tampering() -> None:
    registrations = Registrations(Signer(KEY, "registered-client"), deliverable=lambda u: u.startswith("http://127."))
    answer = registrations.register({"redirect_uris": ["http://127.0.0.1:9/callback"], "client_name": "Tool",
                                     "token_endpoint_auth_method": "client_secret_post"})
    assert answer["token_endpoint_auth_method"] == "none" and "client_secret" not in answer
    client = registrations.resolve(answer["client_id"])
    assert client.redirect_uris == ("http://127.0.0.1:9/callback",) and client.name == "Tool"
    assert client.vouched_by is None
    tampered = answer["client_id"][:-2] + ("AA" if not answer["client_id"].endswith("AA") else "BB")
    other_key = Registrations(Signer(b"o" * 32, "registered-client"), deliverable=lambda u: True)
    for bad in (tampered, "mcp-dcr.", "mcp-dcr.x.y", answer["client_id"] + "x"):
        with pytest.raises(ClientError):
            registrations.resolve(bad)
    with pytest.raises(ClientError):
        other_key.resolve(answer["client_id"])


def test_metadata_documents_are_checked_and_cached() -> None:
    url = "https://vscode.dev/oauth/client-metadata.json"
    fetched: list[str] = []

    def fetch(target: str) -> bytes:
        fetched.append(target)
        return json.dumps({"client_id": url, "client_name": "Visual Studio Code",
                           "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"]}).encode()

    documents = MetadataDocuments({"vscode.dev"}, fetch=fetch)
    client = documents.resolve(url)
    assert client.name == "Visual Studio Code" and client.vouched_by == "vscode.dev"
    assert documents.resolve(url) is client and fetched == [url]
    for refused in ("https://evil.example/client.json", "http://vscode.dev/oauth/client-metadata.json",
                    "https://vscode.dev/", "https://vscode.dev/a#b", "https://x@vscode.dev/a"):
        with pytest.raises(ClientError):
            documents.resolve(refused)
    assert fetched == [url]  # nothing fetched for a refused URL
    with pytest.raises(ClientError, match="another client_id"):
        MetadataDocuments({"vscode.dev"}, fetch=lambda u: b'{"client_id": "x", "redirect_uris": ["a"]}').resolve(url)


def test_browser_state_round_trip() -> None:
    signer, forms = Signer(KEY, "browser-state"), Signer(KEY, "consent-form")
    fresh = BrowserState.from_headers({}, signer)
    assert fresh.is_new and not fresh.has_consented("c", "http://127.0.0.1/cb")
    fresh.remember_consent("c", "http://127.0.0.1:1234/cb")
    set_cookie = fresh.set_cookie(signer)
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    again = BrowserState.from_headers({"cookie": f"other=1; {cookie}"}, signer)
    assert not again.is_new and again.nonce == fresh.nonce
    # Remembered per client and redirect URI (loopback: any port), nothing more.
    assert again.has_consented("c", "http://127.0.0.1:999/cb")
    assert not again.has_consented("c", "https://claude.ai/api/mcp/auth_callback")
    assert not again.has_consented("d", "http://127.0.0.1:999/cb")
    forged = BrowserState.from_headers({"cookie": cookie[:-3] + "abc"}, signer)
    assert forged.is_new and not forged.has_consented("c", "http://127.0.0.1/cb")

    fields = {"client_id": "c", "redirect_uri": "http://127.0.0.1/cb", "code_challenge": "x" * 43}
    token = again.form_token(forms, fields, now=1000)
    assert again.accepts_form_token(forms, token, fields, now=1000 + 60)
    assert not again.accepts_form_token(forms, token, {**fields, "code_challenge": "y" * 43}, now=1060)
    assert not again.accepts_form_token(forms, token, fields, now=1000 + 11 * 60)  # stale
    assert not fresh.__class__.from_headers({}, signer).accepts_form_token(forms, token, fields, now=1060)


# == through the pipeline ===========================================================================


def test_prm_names_the_app_when_the_bridge_is_on(entra: FakeEntra) -> None:
    server = bridged_server(entra)
    prm = server.handle_metadata(get("/.well-known/oauth-protected-resource/mcp")).json
    assert prm["authorization_servers"] == [BASE]
    assert prm["resource"] == BASE + "/mcp"


def test_authorization_server_metadata(entra: FakeEntra) -> None:
    server = bridged_server(entra)
    response = server.handle_authorization_server_metadata(get("/.well-known/oauth-authorization-server"))
    assert response.status == 200
    document = response.json
    assert document["issuer"] == BASE
    assert document["authorization_endpoint"] == BASE + "/oauth/authorize"
    assert document["token_endpoint"] == BASE + "/oauth/token"
    assert document["registration_endpoint"] == BASE + "/oauth/register"
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["none"]
    assert document["client_id_metadata_document_supported"] is True
    assert "authorization_response_iss_parameter_supported" not in document
    assert f"{entra.app_id_uri}/user_impersonation" in document["scopes_supported"]

    without_dcr = bridged_server(entra, MCP_BRIDGE_DYNAMIC_REGISTRATION="false")
    document = without_dcr.handle_authorization_server_metadata(get("/.well-known/oauth-authorization-server")).json
    assert "registration_endpoint" not in document


def test_bridge_routes_answer_404_when_the_bridge_is_off() -> None:
    import function_app

    for handler in (function_app.server.handle_authorization_server_metadata, function_app.server.handle_authorize,
                    function_app.server.handle_token, function_app.server.handle_register):
        response = handler(get("/oauth/x"))
        assert response.status == 404 and response.json["error"] == "not_found"


class FakeUpstream:
    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status, self.body = status, body if body is not None else {"access_token": "at", "token_type": "Bearer"}
        self.forms: list[dict[str, str]] = []

    def __call__(self, url: str, form: Any) -> tuple[int, bytes]:
        self.forms.append(dict(form))
        return self.status, json.dumps(self.body).encode()


def _token_request(form: dict[str, str]) -> HttpRequest:
    from urllib.parse import urlencode

    return HttpRequest("POST", BASE + "/oauth/token", {"host": "localhost:7071",
                       "content-type": "application/x-www-form-urlencoded"}, urlencode(form).encode())


def test_token_requests_are_rewritten_for_entra(entra: FakeEntra) -> None:
    from shared.bridge.bridge import SignInBridge

    upstream = FakeUpstream(body={"access_token": "at", "token_type": "Bearer", "refresh_token": "rt",
                                  "expires_in": 3600, "scope": "x", "correlation_id": "c"})
    settings = bridged_server(entra).settings
    server = McpServer(settings, forker_tools.tools, bridge=SignInBridge(settings, server_name="s", post=upstream))
    registered = server.handle_register(HttpRequest(
        "POST", BASE + "/oauth/register", {"host": "localhost:7071", "content-type": "application/json"},
        json.dumps({"redirect_uris": ["http://localhost:6274/oauth/callback"]}).encode())).json
    response = server.handle_token(_token_request({
        "grant_type": "authorization_code", "client_id": registered["client_id"], "code": "the-code",
        "redirect_uri": "http://localhost:6274/oauth/callback", "code_verifier": "v" * 43,
        "resource": BASE + "/mcp"}))
    assert response.status == 200, response.json
    assert response.json == {"access_token": "at", "token_type": "Bearer", "refresh_token": "rt",
                             "expires_in": 3600, "scope": "x"}
    assert response.headers["Cache-Control"] == "no-store"
    [sent] = upstream.forms
    bound_verifier = sent.pop("code_verifier")
    assert sent == {"client_id": BRIDGE_CLIENT_ID, "grant_type": "authorization_code",
                    "scope": f"{entra.app_id_uri}/user_impersonation offline_access", "code": "the-code",
                    "redirect_uri": BASE + "/oauth/entra-callback"}
    # Not the client's verifier: one bound to this client and redirect URI (shared.bridge.binding).
    assert bound_verifier != "v" * 43 and len(bound_verifier) == 43

    refreshed = server.handle_token(_token_request({"grant_type": "refresh_token", "client_id": registered["client_id"],
                                                    "refresh_token": "rt"}))
    assert refreshed.status == 200 and upstream.forms[-1]["refresh_token"] == "rt"
    assert "resource" not in upstream.forms[-1]


def test_the_authorize_redirect_to_entra(entra: FakeEntra) -> None:
    server = bridged_server(entra)
    registered = server.handle_register(HttpRequest(
        "POST", BASE + "/oauth/register", {"host": "localhost:7071", "content-type": "application/json"},
        json.dumps({"redirect_uris": ["http://127.0.0.1/callback"], "client_name": "<b>Tool</b>"}).encode())).json
    query = {"response_type": "code", "client_id": registered["client_id"],
             "redirect_uri": "http://127.0.0.1:4000/callback", "state": "s1", "code_challenge": "c" * 43,
             "code_challenge_method": "S256", "resource": BASE + "/mcp"}
    from urllib.parse import urlencode

    page = server.handle_authorize(get("/oauth/authorize?" + urlencode(query)))
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    # Not no-referrer: under that policy browsers send the consent form with `Origin: null`.
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert b"&lt;b&gt;Tool&lt;/b&gt;" in page.body and b"<b>Tool</b>" not in page.body
    assert b"not verified" in page.body
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    assert cookie.startswith("__Host-") and "SameSite=Lax" in page.headers["Set-Cookie"]

    from bridge_support import consent_fields

    fields = consent_fields(page.body.decode())
    allow = HttpRequest("POST", BASE + "/oauth/authorize",
                        {"host": "localhost:7071", "content-type": "application/x-www-form-urlencoded",
                         "cookie": cookie, "origin": "null"},
                        urlencode({**fields, "decision": "allow"}).encode())
    response = server.handle_authorize(allow)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == entra.authorize_endpoint
    sent = {k: v[0] for k, v in parse_qs(location.query).items()}
    state, challenge = sent.pop("state"), sent.pop("code_challenge")
    assert sent == {"client_id": BRIDGE_CLIENT_ID, "response_type": "code",
                    "redirect_uri": BASE + "/oauth/entra-callback",
                    "scope": f"{entra.app_id_uri}/user_impersonation offline_access",
                    "code_challenge_method": "S256", "response_mode": "query"}
    assert challenge != "c" * 43 and state != "s1"  # both bound by the bridge

    # Entra's answer comes back to the callback: to the client only in the browser that consented.
    callback = "/oauth/entra-callback?" + urlencode({"code": "the-code", "state": state})
    other_browser = server.handle_sign_in_callback(get(callback))
    assert other_browser.status == 403 and "Location" not in other_browser.headers
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    forwarded = server.handle_sign_in_callback(get(callback, cookie=cookie))
    assert forwarded.status == 302
    assert forwarded.headers["Location"] == "http://127.0.0.1:4000/callback?code=the-code&state=s1"
    tampered = server.handle_sign_in_callback(get("/oauth/entra-callback?" + urlencode(
        {"code": "c", "state": state[:-2] + "xx"}), cookie=cookie))
    assert tampered.status == 400 and "Location" not in tampered.headers
    denied = server.handle_sign_in_callback(get("/oauth/entra-callback?" + urlencode(
        {"error": "access_denied", "error_description": "AADSTS65004: declined", "state": state}), cookie=cookie))
    assert denied.headers["Location"].startswith("http://127.0.0.1:4000/callback?error=access_denied&")



def test_the_bridge_is_imported_on_its_first_request(entra: FakeEntra) -> None:
    # A cold start that serves /mcp (and the PRM) does not pay for the bridge's modules.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, function_app\n"
            "print('shared.bridge.bridge' in sys.modules, function_app.server.settings.bridge.enabled)\n")
    env = {**os.environ, **bridge_env(entra)}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_an_unknown_client_asking_for_json_gets_invalid_client(entra: FakeEntra) -> None:
    # mcp-remote probes /authorize with Accept: application/json and registers again on invalid_client.
    server = bridged_server(entra)
    stale = "mcp-dcr.eyJyIjpbXX0.bm90LW91cnM"
    query = "/oauth/authorize?response_type=code&client_id=" + stale + "&redirect_uri=http://127.0.0.1:1/callback"
    as_json = server.handle_authorize(get(query, accept="application/json"))
    assert as_json.status == 401 and as_json.json["error"] == "invalid_client"
    in_a_browser = server.handle_authorize(get(query, accept="text/html,application/xhtml+xml,*/*"))
    assert in_a_browser.status == 400 and in_a_browser.headers["Content-Type"].startswith("text/html")


def test_the_prompt_goes_to_entra_and_nothing_else_does(entra: FakeEntra) -> None:
    from shared.bridge.authorize import check_authorization, entra_authorize_url
    from shared.bridge.clients import Client
    from shared.bridge.scopes import ScopeMap

    client = Client("c", "C", ("http://127.0.0.1/callback",), "registered")
    params = {"response_type": "code", "client_id": "c", "redirect_uri": "http://127.0.0.1:5/callback",
              "code_challenge": "x" * 43, "code_challenge_method": "S256", "login_hint": "x", "domain_hint": "y"}
    for prompt, sent in (("select_account", "select_account"), ("login", "login"), ("evil", None), (None, None)):
        request = {**params, **({"prompt": prompt} if prompt else {})}
        authorization = check_authorization(request, resolve_client=lambda _: client,
                                            bridge_redirect_uris=("http://127.0.0.1/callback",),
                                            resource="r", scopes=ScopeMap("api://a", ["s"]))
        url = entra_authorize_url("https://e/authorize", client_id="b", callback_uri="cb",
                                  scopes=authorization.scopes, state="st", code_challenge="ch",
                                  prompt=authorization.prompt)
        query = parse_qs(urlsplit(url).query)
        assert query.get("prompt") == ([sent] if sent else None), url
        assert "login_hint" not in query and "domain_hint" not in query
