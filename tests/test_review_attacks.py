"""Review attacks on the sign-in bridge's callback design and on app-only callers (issue 9).

The review's findings were fixed (device-code flows off on the bridge's Entra app, a callback path no MCP client
uses, remembered consent only for loopback redirect URIs), and their tests now assert the fix. The one left, marked
``xfail(strict=True)``, asserts the secure behaviour and documents a known limit of any pre-authorized public client
(README: "A known limit"). Tests named ``test_note_*`` document design trade-offs; the rest, attacks that hold up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from bridge_support import BRIDGE_CLIENT_ID, bridged_server, register_bridge_app, serving
from conftest import ALLOWED_CLIENT_IDS, settings_env
from fake_entra import FakeEntra
from shared.bridge.browser import COOKIE_NAME
from shared.entra.tokens import TokenError, TokenValidator
from shared.http.messages import HttpRequest
from shared.http.pipeline import McpServer
from shared.settings import DEFAULT_BRIDGE_REDIRECT_URIS, load_settings
from test_bridge_attacks import (
    CLAUDE_CALLBACK,
    HOST,
    ISSUER,
    LOOPBACK,
    allow,
    authorize_params,
    consent_page,
    cookie_of,
    entra_get,
    get,
    header,
    is_consent_page,
    pkce,
    redeem,
    register,
    sign_in,
)

ROOT = Path(__file__).resolve().parent.parent
BRIDGE_BICEP = ROOT / "infra" / "modules" / "entra-bridge-app.bicep"
CALLBACK = ISSUER + "/oauth/entra-callback"
SCOPE = "user_impersonation"


def whoami(server: McpServer, access_token: str) -> dict[str, Any]:
    reply = server.handle_mcp(HttpRequest("POST", ISSUER + "/mcp", {
        "host": HOST, "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25", "authorization": f"Bearer {access_token}"},
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "whoami", "arguments": {}}}).encode()))
    assert reply.status == 200, reply.body[:300]
    return json.loads(reply.body)["result"]["structuredContent"]


def handwritten_entra_url(entra: FakeEntra, redirect_uri: str, challenge: str, state: str = "x") -> str:
    """What anyone can write: the bridge's public client ID, a redirect URI of its app registration, own PKCE."""
    return entra.authorize_endpoint + "?" + urlencode({
        "client_id": BRIDGE_CLIENT_ID, "response_type": "code", "redirect_uri": redirect_uri,
        "scope": f"{entra.app_id_uri}/{SCOPE} offline_access", "code_challenge": challenge,
        "code_challenge_method": "S256", "state": state, "response_mode": "query"})


def redeem_at_entra_directly(entra: FakeEntra, code: str, redirect_uri: str, verifier: str) -> requests.Response:
    """The attacker's own machine: the bridge is a public client, so no secret is needed and the bridge is not asked."""
    return requests.post(entra.token_endpoint, data={
        "grant_type": "authorization_code", "client_id": BRIDGE_CLIENT_ID, "code": code,
        "redirect_uri": redirect_uri, "code_verifier": verifier,
        "scope": f"{entra.app_id_uri}/{SCOPE} offline_access"}, timeout=10, verify=entra.ca_bundle)


@pytest.fixture
def bridged(entra: FakeEntra) -> McpServer:
    register_bridge_app(entra)
    return bridged_server(entra)


# ---------------------------------------------------------------------------------------------------------------
# FINDING 1: codes issued to the bridge's public client are redeemable at Entra by whoever chose the challenge
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="KNOWN LIMIT (README): a public client cannot bind a code it did not request;"
                                        " the fix is a confidential bridge client (a managed-identity credential)")
@pytest.mark.parametrize("victim_has_cookie", [False, True], ids=["no-cookie", "own-cookie"])
def test_a_code_stopped_at_the_callback_is_still_redeemable_at_entra(entra: FakeEntra, bridged: McpServer,
                                                                      victim_has_cookie: bool) -> None:
    """ConsentFix / AuthCodeFix against the bridge: the attacker writes an Entra URL with the bridge's client ID, the
    bridge's own callback and the attacker's PKCE challenge. Entra (pre-authorized, SSO) answers silently; the
    browser lands on /oauth/callback, which refuses with 403 -- but the code is in the address bar. A victim talked
    into pasting that URL hands over a code that redeems at Entra directly with the attacker's verifier (no bridge,
    no secret), for a token this server accepts (azp = the bridge)."""
    cookie = sign_in(bridged, entra, register(bridged, ["http://127.0.0.1/callback"]))[2] if victim_has_cookie \
        else None
    verifier, challenge = pkce()
    back = entra_get(entra, handwritten_entra_url(entra, CALLBACK, challenge))
    assert back.startswith(CALLBACK + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    stopped = bridged.handle_sign_in_callback(get("/oauth/entra-callback", query,
                                                  headers={"cookie": cookie} if cookie else None))
    assert stopped.status in (400, 403)  # the bridge does stop it ...

    tokens = redeem_at_entra_directly(entra, query["code"], CALLBACK, verifier)  # ... the pasted URL does not
    if tokens.status_code == 200:
        assert whoami(bridged, tokens.json()["access_token"])["preferred_username"] == "alice@contoso.example"
    assert tokens.status_code != 200, "the victim's code, pasted from the 403 page, became the victim's token"


def test_entra_never_delivers_the_bridges_codes_straight_to_an_mcp_client(entra: FakeEntra, bridged: McpServer) -> None:
    """The Bicep registers http://localhost/oauth/callback and http://127.0.0.1/oauth/callback on the bridge's app in
    every environment, and Entra ignores loopback ports: the MCP Inspector's http://localhost:6274/oauth/callback
    (a default MCP_BRIDGE_REDIRECT_URIS entry) is then a redirect URI of the bridge's own Entra app. A handwritten
    link hands the code to that port with no consent page and no cookie check (README: "Entra only ever returns to
    the bridge's own /oauth/callback"); any listener there -- or a paste -- redeems it with the attacker's verifier.
    tests/test_infra.py's disjointness assertion compares unexpanded Bicep strings ('http://localhost${callbackPath}'),
    so it cannot see this."""
    text = BRIDGE_BICEP.read_text()
    callback_path = re.search(r"var callbackPath = '([^']*)'", text).group(1)  # type: ignore[union-attr]
    expanded = {uri.replace("${callbackPath}", callback_path)
                for uri in re.findall(r"'([^']*)'", text.split("var redirectUris", 1)[1].split("]", 1)[0])}
    overlap = expanded & set(DEFAULT_BRIDGE_REDIRECT_URIS)

    inspector = "http://localhost:6274/oauth/callback"
    verifier, challenge = pkce()
    try:
        location = entra_get(entra, handwritten_entra_url(entra, inspector, challenge))
    except AssertionError:  # Entra refuses the redirect URI outright (AADSTS50011 page): nothing delivered
        location = ""
    delivered = location.startswith(inspector + "?")
    stolen = delivered and redeem_at_entra_directly(
        entra, parse_qs(urlsplit(location).query)["code"][0], inspector, verifier).status_code == 200
    assert not overlap and not stolen, (sorted(overlap), location[:60])


def test_the_bridge_app_does_not_allow_device_code_or_password_flows() -> None:
    """isFallbackPublicClient: true is what enables device code (and ROPC, IWA) for an app; the authorization code
    flow through the publicClient redirect URIs does not need it. With it, device-code phishing
    (microsoft.com/devicelogin) with the bridge's client ID yields this API's tokens and a refresh token without the
    bridge, its consent page or its cookie -- pre-authorization removes Entra's own consent screen. main.bicep already
    calls exactly this 'a phishing route' for the Azure CLI and keeps it to development environments."""
    assert not re.search(r"isFallbackPublicClient:\s*true\b", BRIDGE_BICEP.read_text())


# ---------------------------------------------------------------------------------------------------------------
# design notes (pass): what the browser binding does not cover
# ---------------------------------------------------------------------------------------------------------------


def test_remembered_consent_never_silently_sends_a_browser_to_a_hosted_callback(
        entra: FakeEntra, bridged: McpServer) -> None:
    """Review finding (fixed): once a victim had allowed a client with a hosted callback (claude.ai), any site could
    navigate the victim to /oauth/authorize for that client with the *attacker's* state and challenge; SameSite=Lax
    sends the cookie on that top-level GET, so remembered consent carried the victim silently to claude.ai with the
    attacker's state. Now remembered consent skips the page only for loopback redirect URIs."""
    client = register(bridged, [CLAUDE_CALLBACK, "http://127.0.0.1/callback"], name="Claude")
    _, victim = allow(bridged, authorize_params(client, CLAUDE_CALLBACK, state="victims-own"))  # a week ago
    _, challenge = pkce()  # the attacker's connector's PKCE and state
    answer = consent_page(bridged, authorize_params(client, CLAUDE_CALLBACK, challenge, state="attackers-connector",
                                                    prompt="none"), victim)
    assert is_consent_page(answer), (answer.status, header(answer, "location"))
    # A loopback redirect URI of the same client, once allowed, is remembered as before.
    _, victim = allow(bridged, authorize_params(client, "http://127.0.0.1:4100/callback"), victim)
    again = consent_page(bridged, authorize_params(client, "http://127.0.0.1:4200/callback"), victim)
    assert again.status == 302 and not is_consent_page(again)


def test_note_a_refresh_token_is_not_bound_to_the_client_that_obtained_it(entra: FakeEntra,
                                                                           bridged: McpServer) -> None:
    """Client A's refresh token refreshes as any client B through the bridge (and at Entra directly: public client)."""
    a = register(bridged, ["http://127.0.0.1/callback"], name="A")
    b = register(bridged, ["http://localhost/callback"], name="B")
    code, verifier, _ = sign_in(bridged, entra, a)
    refresh = json.loads(redeem(bridged, a, code, verifier).body)["refresh_token"]
    response = bridged.handle_token(HttpRequest("POST", ISSUER + "/oauth/token", {
        "host": HOST, "content-type": "application/x-www-form-urlencoded"},
        urlencode({"grant_type": "refresh_token", "client_id": b, "refresh_token": refresh}).encode(), query={}))
    assert response.status == 200


# ---------------------------------------------------------------------------------------------------------------
# holds up: state and code mixing, replay, foreign seals, reflected errors, headers
# ---------------------------------------------------------------------------------------------------------------


def _flight(server: McpServer, entra: FakeEntra, client: str, redirect: str, cookie: str | None
            ) -> tuple[dict[str, str], str, str]:
    """Consent and go to Entra; (callback query, client verifier, cookie) without calling the callback."""
    verifier, challenge = pkce()
    answer, cookie = allow(server, authorize_params(client, redirect, challenge, state=f"s-{client[:6]}"), cookie)
    back = entra_get(entra, header(answer, "location") or "")
    return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}, verifier, cookie


def test_a_state_from_one_flight_with_a_code_from_another_redeems_for_neither(entra: FakeEntra,
                                                                               bridged: McpServer) -> None:
    a = register(bridged, ["http://127.0.0.1/callback"], name="A")
    b = register(bridged, ["http://localhost/callback"], name="B")
    first, verifier_a, cookie = _flight(bridged, entra, a, LOOPBACK, None)
    second, verifier_b, cookie = _flight(bridged, entra, b, "http://localhost:9000/callback", cookie)
    mixed = bridged.handle_sign_in_callback(get("/oauth/entra-callback",
                                                {"state": first["state"], "code": second["code"]},
                                                headers={"cookie": cookie}))
    delivered = parse_qs(urlsplit(header(mixed, "location") or "").query)
    assert (header(mixed, "location") or "").startswith(LOOPBACK)  # A's redirect, A's state: sealed, not mixable
    code = delivered["code"][0]
    assert redeem(bridged, a, code, verifier_a).status == 400  # A cannot redeem B's code
    assert redeem(bridged, a, code, verifier_b).status == 400  # nor with B's verifier
    assert redeem(bridged, b, code, verifier_b, "http://localhost:9000/callback").status == 200  # only B, via B


def test_replaying_the_callback_only_replays_a_spent_code(entra: FakeEntra, bridged: McpServer) -> None:
    client = register(bridged, ["http://127.0.0.1/callback"])
    query, verifier, cookie = _flight(bridged, entra, client, LOOPBACK, None)
    for _ in range(2):
        again = bridged.handle_sign_in_callback(get("/oauth/entra-callback", query, headers={"cookie": cookie}))
        assert again.status == 302
    code = parse_qs(urlsplit(header(again, "location") or "").query)["code"][0]
    assert redeem(bridged, client, code, verifier).status == 200
    assert redeem(bridged, client, code, verifier).status == 400


def test_other_seals_of_the_bridge_are_not_a_state(entra: FakeEntra, bridged: McpServer) -> None:
    client = register(bridged, ["http://127.0.0.1/callback"])
    page = consent_page(bridged, authorize_params(client))
    cookie = cookie_of(page)
    for forged in (cookie.split("=", 1)[1], client, "e30.AAAA", ""):
        response = bridged.handle_sign_in_callback(get("/oauth/entra-callback", {"state": forged, "code": "c"},
                                                       headers={"cookie": cookie}))
        assert response.status == 400 and header(response, "location") is None


def test_reflected_errors_cannot_add_parameters_or_headers_and_the_redirect_is_no_store_no_referrer(
        entra: FakeEntra, bridged: McpServer) -> None:
    client = register(bridged, ["http://127.0.0.1/callback"])
    query, _, cookie = _flight(bridged, entra, client, LOOPBACK, None)
    hostile = "x&code=attacker&state=forged#frag\r\nSet-Cookie: a=b"
    response = bridged.handle_sign_in_callback(get("/oauth/entra-callback", {
        "state": query["state"], "error": hostile, "error_description": "<script>" + "d" * 2000}, headers={
        "cookie": cookie}))
    location = header(response, "location") or ""
    assert "\r" not in location and "\n" not in location and "#" not in location
    delivered = parse_qs(urlsplit(location).query)
    assert delivered["state"] == ["s-" + client[:6]] and "code" not in delivered
    assert len(delivered["error_description"][0]) == 1000
    assert header(response, "cache-control") == "no-store" and header(response, "referrer-policy") == "no-referrer"


def test_the_callback_headers_survive_the_functions_adapter(entra: FakeEntra, bridged: McpServer) -> None:
    client = register(bridged, ["http://127.0.0.1/callback"])
    with serving(bridged) as harness:
        query, _, cookie = _flight(bridged, entra, client, LOOPBACK, None)
        response = requests.get(harness.url + "/oauth/entra-callback", params=query, headers={"Cookie": cookie},
                                allow_redirects=False, timeout=10)
        assert response.status_code == 302 and response.headers["Location"].startswith(LOOPBACK)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        other = requests.get(harness.url + "/oauth/entra-callback", params=query, allow_redirects=False, timeout=10)
        assert other.status_code == 403 and "Location" not in other.headers
        assert COOKIE_NAME not in other.headers.get("Set-Cookie", "")


# ---------------------------------------------------------------------------------------------------------------
# app-only callers: what Entra could issue, and what it could not
# ---------------------------------------------------------------------------------------------------------------

AGENT = "5d7c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
ROLE = "Tools.Execute.All"


@pytest.fixture(scope="module")
def validator(fake_entra: FakeEntra) -> TokenValidator:
    settings = load_settings({**settings_env(fake_entra), "ENTRA_ALLOWED_CLIENT_IDS": f"{ALLOWED_CLIENT_IDS},{AGENT}",
                              "MCP_APP_ROLES": ROLE})
    return TokenValidator.from_settings(settings)


@pytest.mark.parametrize("idtyp", ["App", "APP", " app", "app ", ["app"], 1, True, ""])
def test_idtyp_spellings_that_are_not_app_fail_closed(fake_entra: FakeEntra, validator: TokenValidator,
                                                      idtyp: Any) -> None:
    token = fake_entra.mint_app_only(roles=(ROLE,), client_id=AGENT, claims={"idtyp": idtyp})
    with pytest.raises(TokenError) as refused:  # taken for a user, which then lacks scp
        validator.validate(token)
    assert "scope" in refused.value.description


@pytest.mark.parametrize("roles", [ROLE, f"{ROLE} Other", {ROLE: True}, [[ROLE]], None, []])
def test_roles_that_are_not_a_list_of_strings_admit_nothing(fake_entra: FakeEntra, validator: TokenValidator,
                                                           roles: Any) -> None:
    token = fake_entra.mint_app_only(roles=(), client_id=AGENT, claims={"roles": roles})
    with pytest.raises(TokenError):
        validator.validate(token)


def test_mixed_roles_admit_only_by_the_string_entry(fake_entra: FakeEntra, validator: TokenValidator) -> None:
    principal = validator.validate(fake_entra.mint_app_only(roles=(), client_id=AGENT,
                                                            claims={"roles": [1, {"a": ROLE}, ROLE.lower(), ROLE]}))
    assert principal.kind == "app" and principal.roles == {ROLE.lower(), ROLE}
    with pytest.raises(TokenError):
        validator.validate(fake_entra.mint_app_only(roles=(), client_id=AGENT, claims={"roles": [ROLE.lower()]}))


@pytest.mark.parametrize("claims,remove", [
    ({"roles": [ROLE]}, ["idtyp"]),                        # user, no scp (a .default-only request), no idtyp claim
    ({"roles": [ROLE], "idtyp": "user"}, []),              # the same with include_user_token
    ({"roles": [ROLE], "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"}, []),  # real pairwise sub shape
])
def test_user_tokens_without_scp_are_never_apps(fake_entra: FakeEntra, validator: TokenValidator,
                                                claims: dict[str, Any], remove: list[str]) -> None:
    token = fake_entra.mint(scopes=None, client_id=AGENT, claims=claims, remove=remove)
    with pytest.raises(TokenError) as refused:
        validator.validate(token)
    assert "scope" in refused.value.description


def test_app_only_tokens_for_another_audience_or_v1_are_refused(fake_entra: FakeEntra,
                                                               validator: TokenValidator) -> None:
    for claims in ({"aud": "00000003-0000-0000-c000-000000000000"}, {"aud": f"api://{fake_entra.api_client_id}"},
                   {"ver": "1.0"}):
        with pytest.raises(TokenError):
            validator.validate(fake_entra.mint_app_only(roles=(ROLE,), client_id=AGENT, claims=claims))
