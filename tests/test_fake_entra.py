"""Self-tests of the fake Entra tenant: if these fail, every auth test downstream is meaningless."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from fake_entra import AZURE_CLI_CLIENT_ID, VSCODE_CLIENT_ID, FakeEntra, foreign_private_key

TIMEOUT = 5  # every HTTP call in these tests is bounded


def _segment(token: str, index: int) -> dict[str, Any]:
    raw = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def header_of(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def claims_of(token: str) -> dict[str, Any]:
    return _segment(token, 1)


def verify(fake: FakeEntra, token: str) -> dict[str, Any]:
    """Validate like a resource server would: key by kid from the published JWKS over verified TLS, RS256 only."""
    client = jwt.PyJWKClient(fake.jwks_uri, cache_jwk_set=False, ssl_context=fake.client_ssl_context(), timeout=TIMEOUT)
    signing_key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=fake.api_client_id,
        issuer=fake.issuer,
        options={"require": ["exp", "nbf", "iat", "iss", "aud"]},
    )


@pytest.fixture
def own_fake() -> Iterator[FakeEntra]:
    """A private tenant for tests that rotate keys, so the session tenant the app uses is left alone."""
    with FakeEntra() as fake:
        yield fake


# ---- HTTPS, discovery, JWKS ---------------------------------------------------------------------------------------
def test_discovery_over_https_with_explicit_ca(fake_entra: FakeEntra) -> None:
    response = requests.get(fake_entra.discovery_url, verify=fake_entra.ca_bundle, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    doc = response.json()
    tenant_base = f"{fake_entra.authority}/{fake_entra.tenant_id}"
    assert doc["issuer"] == fake_entra.issuer == f"{tenant_base}/v2.0"
    assert doc["jwks_uri"] == f"{tenant_base}/discovery/v2.0/keys"
    assert doc["token_endpoint"] == f"{tenant_base}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{tenant_base}/oauth2/v2.0/authorize"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert fake_entra.authority.startswith("https://127.0.0.1:")


def test_trust_comes_from_standard_env_vars(fake_entra: FakeEntra) -> None:
    assert os.environ["REQUESTS_CA_BUNDLE"] == fake_entra.ca_bundle
    assert os.environ["SSL_CERT_FILE"] == fake_entra.ca_bundle
    # requests' default verification picks up REQUESTS_CA_BUNDLE ...
    assert requests.get(fake_entra.jwks_uri, timeout=TIMEOUT).status_code == 200
    # ... and the ssl module's default context (urllib, PyJWKClient without ssl_context, httpx) SSL_CERT_FILE.
    with urllib.request.urlopen(fake_entra.discovery_url, timeout=TIMEOUT) as response:
        assert json.load(response)["issuer"] == fake_entra.issuer


def test_tls_is_really_verified(fake_entra: FakeEntra) -> None:
    # Without the throwaway CA (certifi's public roots only) the handshake must fail: the TLS is not decorative.
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        session.get(fake_entra.jwks_uri, timeout=TIMEOUT)
    # And the failed handshake did not break the server.
    assert requests.get(fake_entra.jwks_uri, timeout=TIMEOUT).status_code == 200


def test_silent_client_does_not_block_others(fake_entra: FakeEntra) -> None:
    # Handshakes run per connection: a TCP client that never speaks TLS must not stall the accept loop.
    with socket.create_connection(("127.0.0.1", fake_entra.port), timeout=TIMEOUT):
        started = time.monotonic()
        assert requests.get(fake_entra.jwks_uri, timeout=TIMEOUT).status_code == 200
        assert time.monotonic() - started < 2


def test_jwks_shape(fake_entra: FakeEntra) -> None:
    keys = requests.get(fake_entra.jwks_uri, timeout=TIMEOUT).json()["keys"]
    assert [k["kid"] for k in keys] == [fake_entra.signing_kid]
    (key,) = keys
    assert key["kty"] == "RSA"
    assert key["use"] == "sig"
    assert key["e"] == "AQAB"
    assert key["x5t"] == key["kid"]
    for name in ("n", "e", "kid"):
        assert "=" not in key[name]
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256  # RSA-2048


def test_other_tenant_and_unknown_paths(entra: FakeEntra) -> None:
    other = f"{entra.authority}/common/v2.0/.well-known/openid-configuration"
    response = requests.get(other, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert "AADSTS90002" in response.json()["error_description"]
    unknown = f"{entra.authority}/{entra.tenant_id}/discovery/v2.0/keys/x"
    assert requests.get(unknown, timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{entra.authority}/", timeout=TIMEOUT).status_code == 404
    assert (entra.jwks_fetches, entra.discovery_fetches) == (0, 0)


def test_token_endpoint_answers_json_error(fake_entra: FakeEntra) -> None:
    response = requests.post(fake_entra.token_endpoint, data={"grant_type": "x"}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


# ---- minting and verification -----------------------------------------------------------------------------------
def test_default_token_is_a_valid_v2_delegated_token(fake_entra: FakeEntra, token: str) -> None:
    claims = verify(fake_entra, token)
    assert claims["aud"] == fake_entra.api_client_id
    assert claims["iss"] == fake_entra.issuer
    assert claims["tid"] == fake_entra.tenant_id
    assert claims["azp"] == VSCODE_CLIENT_ID
    assert claims["azpacr"] == "0"
    assert claims["scp"] == "user_impersonation"
    assert claims["ver"] == "2.0"
    assert claims["oid"] == FakeEntra.user_oid("alice")
    assert claims["name"] == "Alice Example"
    assert claims["preferred_username"] == "alice@contoso.example"
    assert claims["sub"] != claims["oid"]
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert "idtyp" not in claims
    assert "roles" not in claims
    assert header_of(token) == {"typ": "JWT", "alg": "RS256", "kid": fake_entra.signing_kid}


def test_mint_options(fake_entra: FakeEntra) -> None:
    bob = claims_of(fake_entra.mint(user="bob", scopes=["a", "b"], client_id=AZURE_CLI_CLIENT_ID))
    assert bob["oid"] == FakeEntra.user_oid("bob") != FakeEntra.user_oid("alice")
    assert bob["preferred_username"] == "bob@contoso.example"
    assert bob["scp"] == "a b"
    assert bob["azp"] == AZURE_CLI_CLIENT_ID

    token = fake_entra.mint(claims={"aud": "someone-else", "cnf": {"kid": "x"}}, remove=["tid", "scp"])
    claims = claims_of(token)
    assert claims["aud"] == "someone-else"
    assert claims["cnf"] == {"kid": "x"}
    assert "tid" not in claims
    assert "scp" not in claims
    assert "scp" not in claims_of(fake_entra.mint(scopes=None))

    header = header_of(fake_entra.mint(headers={"kid": None, "typ": "at+jwt", "x5t": "abc"}))
    assert header == {"typ": "at+jwt", "alg": "RS256", "x5t": "abc"}

    fixed = claims_of(fake_entra.mint(now=1_000_000, expires_in=60, not_before_offset=30))
    assert (fixed["iat"], fixed["nbf"], fixed["exp"]) == (1_000_000, 1_000_030, 1_000_060)


def test_expired_and_not_yet_valid_tokens_are_signed_but_rejected(fake_entra: FakeEntra) -> None:
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(fake_entra, fake_entra.mint(expires_in=-600))
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(fake_entra, fake_entra.mint(not_before_offset=600))


def test_foreign_key_forgery_fails_signature_check(fake_entra: FakeEntra) -> None:
    forged = fake_entra.mint(key=foreign_private_key())
    assert header_of(forged)["kid"] == fake_entra.signing_kid  # claims a trusted kid
    with pytest.raises(jwt.InvalidSignatureError):
        verify(fake_entra, forged)


def test_alg_none_token(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(alg="none")
    signature = token.split(".")[2]
    assert token.endswith(".")
    assert signature == ""
    assert header_of(token)["alg"] == "none"
    assert claims_of(token)["aud"] == fake_entra.api_client_id
    with pytest.raises(jwt.InvalidTokenError):
        verify(fake_entra, token)


def test_hs256_key_confusion_token(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(alg="HS256")
    assert header_of(token) == {"typ": "JWT", "alg": "HS256", "kid": fake_entra.signing_kid}
    signing_input, signature = token.rsplit(".", 1)
    # Keyed with the published public key's PEM: exactly what a confused validator would use as HMAC secret.
    expected = hmac.new(fake_entra.public_key_pem(), signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    with pytest.raises(jwt.InvalidTokenError):
        verify(fake_entra, token)
    secret = b"a-test-secret-that-is-at-least-32-bytes"
    custom = fake_entra.mint(alg="HS256", hs_secret=secret)
    assert jwt.decode(custom, secret, algorithms=["HS256"], audience=fake_entra.api_client_id)["ver"] == "2.0"


def test_other_rsa_algs_are_really_signed(fake_entra: FakeEntra) -> None:
    key = fake_entra.public_key_pem()
    for alg in ("RS384", "PS256"):
        token = fake_entra.mint(alg=alg)
        assert jwt.decode(token, key, algorithms=[alg], audience=fake_entra.api_client_id)["tid"]
        with pytest.raises(jwt.InvalidAlgorithmError):
            verify(fake_entra, token)  # RS256 only


def test_mint_app_only(fake_entra: FakeEntra) -> None:
    claims = verify(fake_entra, fake_entra.mint_app_only(roles=["Tools.Read", "Tools.Write"]))
    assert claims["idtyp"] == "app"
    assert claims["roles"] == ["Tools.Read", "Tools.Write"]
    assert claims["oid"] == claims["sub"] == FakeEntra.service_principal_oid(VSCODE_CLIENT_ID)
    assert claims["azp"] == VSCODE_CLIENT_ID
    for absent in ("scp", "name", "preferred_username"):
        assert absent not in claims
    other = claims_of(fake_entra.mint_app_only(client_id=AZURE_CLI_CLIENT_ID, claims={"x": 1}))
    assert other["azp"] == AZURE_CLI_CLIENT_ID
    assert other["x"] == 1


def test_mint_v1(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint_v1()
    claims = claims_of(token)
    assert claims["iss"] == f"https://sts.windows.net/{fake_entra.tenant_id}/"
    assert claims["ver"] == "1.0"
    assert claims["aud"] == f"api://{fake_entra.api_client_id}"
    assert claims["appid"] == VSCODE_CLIENT_ID
    assert claims["scp"] == "user_impersonation"
    assert "azp" not in claims
    # Correctly signed with a published key; only the v2 issuer/audience checks reject it.
    with pytest.raises((jwt.InvalidIssuerError, jwt.InvalidAudienceError)):
        verify(fake_entra, token)


# ---- keys: rotation and retirement ----------------------------------------------------------------------------------
def test_rotation_publishes_both_keys_and_retire_removes(own_fake: FakeEntra) -> None:
    old_kid = own_fake.signing_kid
    old_token = own_fake.mint()
    new_kid = own_fake.rotate()
    assert new_kid != old_kid
    assert own_fake.signing_kid == new_kid
    published = [k["kid"] for k in requests.get(own_fake.jwks_uri, timeout=TIMEOUT).json()["keys"]]
    assert published == [old_kid, new_kid]

    new_token = own_fake.mint()
    assert header_of(new_token)["kid"] == new_kid
    assert verify(own_fake, new_token)["ver"] == "2.0"
    assert verify(own_fake, old_token)["ver"] == "2.0"  # tokens signed before rotation stay valid

    own_fake.retire(old_kid)
    assert [k["kid"] for k in requests.get(own_fake.jwks_uri, timeout=TIMEOUT).json()["keys"]] == [new_kid]
    with pytest.raises(jwt.PyJWKClientError):
        verify(own_fake, old_token)
    # A retired key can still sign, to produce tokens with a revoked kid.
    assert header_of(own_fake.mint(key=old_kid))["kid"] == old_kid

    own_fake.publish(old_kid)
    assert own_fake.published_kids == [old_kid, new_kid]


def test_reset_restores_initial_key(entra: FakeEntra) -> None:
    initial = entra.signing_kid
    entra.rotate()
    entra.retire(initial)
    entra.reset()
    assert entra.signing_kid == initial
    assert entra.published_kids == [initial]


def test_instances_are_independent(fake_entra: FakeEntra, own_fake: FakeEntra) -> None:
    assert own_fake.tenant_id != fake_entra.tenant_id
    assert own_fake.api_client_id != fake_entra.api_client_id
    assert own_fake.port != fake_entra.port
    with pytest.raises(jwt.InvalidIssuerError):
        verify(fake_entra, own_fake.mint(claims={"aud": fake_entra.api_client_id}))


def test_extra_instances_are_trusted_through_the_env_bundle(own_fake: FakeEntra) -> None:
    # One CA per process: product code relying on REQUESTS_CA_BUNDLE / SSL_CERT_FILE can reach any instance.
    assert requests.get(own_fake.jwks_uri, timeout=TIMEOUT).status_code == 200
    with urllib.request.urlopen(own_fake.discovery_url, timeout=TIMEOUT) as response:
        assert json.load(response)["issuer"] == own_fake.issuer


def test_stopped_instance_refuses_connections() -> None:
    with FakeEntra(tenant_id="11111111-2222-3333-4444-555555555555", api_client_id="api") as fake:
        url = fake.jwks_uri
        bundle = fake.ca_bundle
        assert fake.issuer.endswith("/11111111-2222-3333-4444-555555555555/v2.0")
        assert requests.get(url, verify=bundle, timeout=TIMEOUT).status_code == 200
    assert not os.path.exists(bundle)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=False, timeout=TIMEOUT)


# ---- fault injection and counters ---------------------------------------------------------------------------------
def test_counters(entra: FakeEntra) -> None:
    assert (entra.jwks_fetches, entra.discovery_fetches) == (0, 0)
    requests.get(entra.discovery_url, timeout=TIMEOUT)
    for _ in range(2):
        requests.get(entra.jwks_uri, timeout=TIMEOUT)
    assert (entra.jwks_fetches, entra.discovery_fetches) == (2, 1)
    entra.reset_counters()
    assert (entra.jwks_fetches, entra.discovery_fetches) == (0, 0)


def test_fail_mode_503(entra: FakeEntra) -> None:
    entra.fail_mode = "503"
    for url in (entra.jwks_uri, entra.discovery_url):
        response = requests.get(url, timeout=TIMEOUT)
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    assert (entra.jwks_fetches, entra.discovery_fetches) == (1, 1)  # failed fetches count too
    entra.fail_mode = None
    assert requests.get(entra.jwks_uri, timeout=TIMEOUT).status_code == 200


def test_fail_mode_reset(entra: FakeEntra) -> None:
    entra.fail_mode = "reset"
    for url in (entra.jwks_uri, entra.discovery_url):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, timeout=TIMEOUT)
    assert entra.jwks_fetches == 1


def test_fail_mode_slow(entra: FakeEntra) -> None:
    entra.fail_mode = "slow"
    entra.delay_seconds = 0.5
    started = time.monotonic()
    assert requests.get(entra.jwks_uri, timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started >= 0.5
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(entra.discovery_url, timeout=0.1)


def test_unknown_fail_mode_is_refused(entra: FakeEntra) -> None:
    with pytest.raises(ValueError):
        entra.fail_mode = "boom"  # type: ignore[assignment]


def test_hold_blocks_key_fetches_until_release(entra: FakeEntra) -> None:
    results: list[int] = []
    entra.hold()
    fetcher = threading.Thread(target=lambda: results.append(requests.get(entra.jwks_uri, timeout=TIMEOUT).status_code))
    fetcher.start()
    assert entra.wait_for_fetches(jwks=1)
    # Discovery is not held by default.
    assert requests.get(entra.discovery_url, timeout=TIMEOUT).status_code == 200
    fetcher.join(timeout=0.3)
    assert fetcher.is_alive()
    assert results == []
    entra.fail_mode = "503"  # faults are applied after the gate: the in-flight fetch sees it
    entra.release()
    fetcher.join(timeout=TIMEOUT)
    assert results == [503]
    assert entra.jwks_fetches == 1


def test_hold_discovery_too(entra: FakeEntra) -> None:
    entra.hold(discovery=True)
    entra.hold_timeout = 0.2  # a forgotten hold must not hang forever
    started = time.monotonic()
    assert requests.get(entra.discovery_url, timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_overrides(entra: FakeEntra) -> None:
    entra.jwks_override = {"keys": [{"kty": "EC", "kid": "x"}]}
    entra.discovery_override = b"not json"
    assert requests.get(entra.jwks_uri, timeout=TIMEOUT).json() == {"keys": [{"kty": "EC", "kid": "x"}]}
    assert requests.get(entra.discovery_url, timeout=TIMEOUT).content == b"not json"


# ---- conftest contract --------------------------------------------------------------------------------------------
def test_app_env(app_env: dict[str, str], fake_entra: FakeEntra) -> None:
    assert app_env == {
        "ENTRA_TENANT_ID": fake_entra.tenant_id,
        "ENTRA_CLIENT_ID": fake_entra.api_client_id,
        "ENTRA_ALLOWED_CLIENT_IDS": f"{VSCODE_CLIENT_ID},{AZURE_CLI_CLIENT_ID}",
        "AZURE_AUTHORITY_HOST": fake_entra.authority,
        "MCP_ALLOWED_ORIGINS": "http://localhost:6274",
    }
    for name, value in app_env.items():
        assert os.environ[name] == value


# ---- interactive sign-in for public clients (authorize + authorization_code with PKCE + refresh_token) ---------
BRIDGE_CLIENT_ID = "5b0c7d1e-0f3a-4e6b-9c2d-8a7f6e5d4c3b"  # the sign-in bridge's public client registration
LOOPBACK_CALLBACK = "http://127.0.0.1/callback"
WEB_CALLBACK = "https://bridge.example/auth/callback?tenant=contoso"


def pkce_pair(seed: str = "v") -> tuple[str, str]:
    verifier = (seed * 64)[:64]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def api_scope(fake: FakeEntra, name: str = "user_impersonation") -> str:
    return f"{fake.app_id_uri}/{name}"


@pytest.fixture
def bridge(entra: FakeEntra) -> FakeEntra:
    """The session tenant with the bridge's public client registered and pre-authorized on the API."""
    entra.add_public_client(BRIDGE_CLIENT_ID, [LOOPBACK_CALLBACK, "http://localhost/cb", WEB_CALLBACK])
    entra.pre_authorize(BRIDGE_CLIENT_ID)
    return entra


def authorize(fake: FakeEntra, **overrides: str | None) -> requests.Response:
    """GET the authorize endpoint like a browser would, without following the redirect. None drops a parameter."""
    params: dict[str, str | None] = {
        "client_id": BRIDGE_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:49152/callback",
        "scope": f"openid profile offline_access {api_scope(fake)}",
        "state": "st-123",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
        **overrides,
    }
    query = {k: v for k, v in params.items() if v is not None}
    return requests.get(fake.authorize_endpoint, params=query, allow_redirects=False, timeout=TIMEOUT)


def redirect_params(response: requests.Response) -> tuple[str, dict[str, list[str]]]:
    """(Location without query, its query parameters) of a 302 from the authorize endpoint."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    base, _, query = location.partition("?")
    return base, urllib.parse.parse_qs(query, keep_blank_values=True)


def code_from(response: requests.Response) -> str:
    _, params = redirect_params(response)
    assert "error" not in params, params
    return params["code"][0]


def token_call(fake: FakeEntra, **form: str) -> requests.Response:
    return requests.post(fake.token_endpoint, data=form, timeout=TIMEOUT)


def redeem(fake: FakeEntra, code: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": BRIDGE_CLIENT_ID,
        "code": code,
        "redirect_uri": "http://127.0.0.1:49152/callback",
        "code_verifier": pkce_pair()[0],
        **overrides,
    }
    return token_call(fake, **form)


def refresh(fake: FakeEntra, refresh_token: str, **overrides: str) -> requests.Response:
    form = {"grant_type": "refresh_token", "client_id": BRIDGE_CLIENT_ID, "refresh_token": refresh_token, **overrides}
    return token_call(fake, **form)


def assert_error(response: requests.Response, error: str, code: int, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")


def assert_error_page(response: requests.Response, code: int) -> None:
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"AADSTS{code}" in response.text


def assert_error_redirect(response: requests.Response, error: str, code: int, *, state: bool = True) -> None:
    _, params = redirect_params(response)
    assert "code" not in params
    assert params["error"] == [error]
    assert params["error_description"][0].startswith(f"AADSTS{code}:")
    assert params.get("state") == (["st-123"] if state else None)


def test_sign_in_happy_path_code_pkce_and_refresh(bridge: FakeEntra) -> None:
    bridge.signed_in_user = "bob"
    response = authorize(bridge, nonce="n-1")
    base, params = redirect_params(response)
    assert base == "http://127.0.0.1:49152/callback"
    assert params["state"] == ["st-123"]
    assert bridge.issued_codes == 1
    (recorded,) = bridge.authorize_requests
    assert recorded["client_id"] == BRIDGE_CLIENT_ID
    assert recorded["code_challenge_method"] == "S256"

    answer = redeem(bridge, params["code"][0])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == f"{api_scope(bridge)} offline_access"
    assert body["expires_in"] == body["ext_expires_in"] == 3600
    claims = verify(bridge, body["access_token"])  # aud = the API, signed by a published key
    assert claims["azp"] == BRIDGE_CLIENT_ID
    assert claims["scp"] == "user_impersonation"
    assert claims["oid"] == FakeEntra.user_oid("bob")
    assert claims["preferred_username"] == "bob@contoso.example"
    id_token = claims_of(body["id_token"])
    assert id_token["aud"] == BRIDGE_CLIENT_ID
    assert id_token["nonce"] == "n-1"
    assert id_token["oid"] == claims["oid"]
    assert bridge.issued_sign_in_tokens == [body["access_token"]]

    refreshed = refresh(bridge, body["refresh_token"], scope=f"{api_scope(bridge)} offline_access")
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert verify(bridge, new["access_token"])["oid"] == FakeEntra.user_oid("bob")
    assert new["refresh_token"] != body["refresh_token"]
    assert [r["grant_type"] for r in bridge.token_requests] == ["authorization_code", "refresh_token"]


def test_no_offline_access_no_refresh_token_and_no_openid_no_id_token(bridge: FakeEntra) -> None:
    body = redeem(bridge, code_from(authorize(bridge, scope=api_scope(bridge)))).json()
    assert body["scope"] == api_scope(bridge)
    assert "refresh_token" not in body
    assert "id_token" not in body


def test_loopback_redirect_ignores_the_port_only(bridge: FakeEntra) -> None:
    for uri in ("http://127.0.0.1/callback", "http://127.0.0.1:8400/callback", "http://localhost:3000/cb",
                "http://localhost/cb"):
        base, params = redirect_params(authorize(bridge, redirect_uri=uri))
        assert base == uri
        # The code is bound to the exact URI sent, port included.
        assert redeem(bridge, params["code"][0], redirect_uri=uri).status_code == 200
    for uri in ("http://127.0.0.1:8400/callback/", "http://127.0.0.1:8400/Callback", "http://localhost:8400/callback",
                "https://127.0.0.1:8400/callback", "http://127.0.0.1.evil.example/callback",
                "http://127.0.0.1@evil.example/callback", "http://[::1]:8400/callback"):
        assert_error_page(authorize(bridge, redirect_uri=uri), 50011)


def test_https_redirect_must_match_exactly_and_keeps_its_query(bridge: FakeEntra) -> None:
    base, params = redirect_params(authorize(bridge, redirect_uri=WEB_CALLBACK, state=None))
    assert base == "https://bridge.example/auth/callback"
    assert params["tenant"] == ["contoso"]  # the registered URI's own query survives
    assert "state" not in params
    for uri in ("https://bridge.example/auth/callback", "https://bridge.example:443/auth/callback?tenant=contoso",
                "https://BRIDGE.example/auth/callback?tenant=contoso", "http://bridge.example/auth/callback?tenant=contoso"):
        assert_error_page(authorize(bridge, redirect_uri=uri), 50011)


def test_errors_before_the_redirect_uri_is_trusted_show_a_page(bridge: FakeEntra) -> None:
    # A bad redirect URI is never redirected to, even with other errors in the request.
    assert_error_page(authorize(bridge, redirect_uri="https://evil.example/cb", response_type="token"), 50011)
    assert_error_page(authorize(bridge, redirect_uri=None), 50011)
    assert_error_page(authorize(bridge, client_id="00000000-0000-0000-0000-000000000000"), 700016)
    assert_error_page(authorize(bridge, client_id=None), 900144)
    response = requests.get(f"{bridge.authority}/common/oauth2/v2.0/authorize", allow_redirects=False, timeout=TIMEOUT)
    assert_error_page(response, 90002)
    assert len(bridge.authorize_requests) == 5  # every request is recorded, failed ones too
    assert bridge.issued_codes == 0


def test_authorize_errors_are_redirected_entra_style(bridge: FakeEntra) -> None:
    assert_error_redirect(authorize(bridge, response_type="token"), "unsupported_response_type", 70005)
    assert_error_redirect(authorize(bridge, scope="openid user_impersonation"), "invalid_scope", 650053)
    assert_error_redirect(authorize(bridge, scope="api://other-api/user_impersonation"), "invalid_scope", 70011)
    assert_error_redirect(authorize(bridge, scope=api_scope(bridge, "Files.Read")), "invalid_scope", 70011)
    assert_error_redirect(authorize(bridge, scope="openid offline_access"), "invalid_scope", 70011)
    assert_error_redirect(authorize(bridge, state=None, scope="x"), "invalid_scope", 650053, state=False)
    assert bridge.issued_codes == 0


def test_pkce_is_required_and_plain_is_refused(bridge: FakeEntra) -> None:
    _, challenge = pkce_pair()
    assert_error_redirect(authorize(bridge, code_challenge=None), "invalid_request", 9002325)
    assert_error_redirect(authorize(bridge, code_challenge_method=None), "invalid_request", 9002325)
    assert_error_redirect(authorize(bridge, code_challenge_method="plain"), "invalid_request", 9002325)
    assert_error_redirect(authorize(bridge, code_challenge=challenge[:20]), "invalid_request", 501491)


def test_resource_rule(bridge: FakeEntra) -> None:
    canonical = "https://mcp.contoso.example/mcp"
    bridge.identifier_uris = [bridge.app_id_uri, canonical]
    scope = f"offline_access {canonical}/user_impersonation"
    for resource in ("https://func-app.azurewebsites.net/mcp", f"{canonical}/", ""):
        assert_error_redirect(authorize(bridge, scope=scope, resource=resource), "invalid_target", 9010010)
    code = code_from(authorize(bridge, scope=scope, resource=canonical))
    assert_error(redeem(bridge, code, resource="https://elsewhere.example/mcp"), "invalid_target", 9010010)
    body = redeem(bridge, code, resource=canonical).json()
    assert body["scope"] == f"{canonical}/user_impersonation offline_access"
    assert verify(bridge, body["access_token"])["scp"] == "user_impersonation"
    assert_error(refresh(bridge, body["refresh_token"], resource="https://x.example"), "invalid_target", 9010010)

    # Before the 2026 rule, Entra ignored `resource` on the v2 endpoint.
    bridge.enforce_resource_rule = False
    code = code_from(authorize(bridge, scope=scope, resource="https://func-app.azurewebsites.net/mcp"))
    assert redeem(bridge, code, resource="https://func-app.azurewebsites.net/mcp").status_code == 200


def test_wrong_verifier_is_refused(bridge: FakeEntra) -> None:
    code = code_from(authorize(bridge))
    assert_error(redeem(bridge, code, code_verifier=pkce_pair("w")[0]), "invalid_grant", 501481)
    assert_error(redeem(bridge, code, code_verifier=pkce_pair()[1]), "invalid_grant", 501481)  # challenge != verifier
    assert_error(redeem(bridge, code, code_verifier=""), "invalid_request", 900144)
    # Only a successful redemption consumes the code.
    assert redeem(bridge, code).status_code == 200


def test_code_is_single_use_short_lived_and_bound(bridge: FakeEntra) -> None:
    code = code_from(authorize(bridge))
    assert redeem(bridge, code).status_code == 200
    assert_error(redeem(bridge, code), "invalid_grant", 54005)
    assert_error(redeem(bridge, "fake-code-made-up"), "invalid_grant", 70008)

    code = code_from(authorize(bridge))
    assert_error(redeem(bridge, code, redirect_uri="http://127.0.0.1:49153/callback"), "invalid_grant", 500112)
    bridge.add_public_client(AZURE_CLI_CLIENT_ID, [LOOPBACK_CALLBACK])
    assert_error(redeem(bridge, code, client_id=AZURE_CLI_CLIENT_ID), "invalid_grant", 70000)
    assert_error(redeem(bridge, code, client_id="not-registered"), "unauthorized_client", 700016)
    assert_error(redeem(bridge, code, client_secret="s3cret"), "invalid_client", 700025, status=401)
    assert redeem(bridge, code).status_code == 200  # none of the refused attempts used it up

    bridge.code_lifetime = 0
    assert_error(redeem(bridge, code_from(authorize(bridge))), "invalid_grant", 70008)


def test_concurrent_redemptions_yield_one_token(bridge: FakeEntra) -> None:
    code = code_from(authorize(bridge))
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(redeem(bridge, code).status_code)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert sorted(statuses) == [200] + [400] * 5
    assert len(bridge.issued_sign_in_tokens) == 1


def test_refresh_rotation_scopes_and_revocation(bridge: FakeEntra) -> None:
    first = redeem(bridge, code_from(authorize(bridge))).json()["refresh_token"]
    second = refresh(bridge, first).json()
    assert second["scope"] == f"{api_scope(bridge)} offline_access"  # no scope: the original ones
    assert "id_token" in second  # the sign-in asked for openid
    third = refresh(bridge, second["refresh_token"]).json()
    assert len({first, second["refresh_token"], third["refresh_token"]}) == 3
    assert refresh(bridge, first).status_code == 200  # rotated tokens keep working, as Entra's do

    bridge.add_public_client(AZURE_CLI_CLIENT_ID, [LOOPBACK_CALLBACK])
    assert_error(refresh(bridge, first, client_id=AZURE_CLI_CLIENT_ID), "invalid_grant", 70000)
    assert_error(refresh(bridge, "fake-rt-unknown"), "invalid_grant", 70000)
    assert_error(refresh(bridge, first, scope=api_scope(bridge, "Files.Read")), "invalid_scope", 70011)
    bridge.api_scopes.add("Files.Read")
    assert_error(refresh(bridge, first, scope=api_scope(bridge, "Files.Read")), "invalid_scope", 70011)  # not granted
    assert_error(refresh(bridge, first, client_secret="s3cret"), "invalid_client", 700025, status=401)

    bridge.revoke_refresh_tokens()
    for token in (first, second["refresh_token"], third["refresh_token"]):
        assert_error(refresh(bridge, token), "invalid_grant", 700082)
    fresh = redeem(bridge, code_from(authorize(bridge))).json()["refresh_token"]
    assert refresh(bridge, fresh).status_code == 200  # tokens issued after the revocation work


def test_refresh_token_is_bound_to_its_user(bridge: FakeEntra) -> None:
    first = redeem(bridge, code_from(authorize(bridge))).json()["refresh_token"]
    bridge.signed_in_user = "carol"  # the browser session changes; the refresh token still belongs to alice
    claims = verify(bridge, refresh(bridge, first).json()["access_token"])
    assert claims["oid"] == FakeEntra.user_oid("alice")


def test_consent_required_unless_pre_authorized_or_granted(entra: FakeEntra) -> None:
    entra.add_public_client(BRIDGE_CLIENT_ID, [LOOPBACK_CALLBACK])
    assert_error_redirect(authorize(entra), "consent_required", 65001)
    assert entra.issued_codes == 0
    entra.grant_user_consent(BRIDGE_CLIENT_ID)
    assert redeem(entra, code_from(authorize(entra))).status_code == 200

    # VS Code is pre-authorized out of the box (it never shows a consent prompt).
    entra.add_public_client(VSCODE_CLIENT_ID, ["https://vscode.dev/redirect"])
    response = authorize(entra, client_id=VSCODE_CLIENT_ID, redirect_uri="https://vscode.dev/redirect")
    assert code_from(response)

    entra.add_public_client(AZURE_CLI_CLIENT_ID, [LOOPBACK_CALLBACK])
    assert_error_redirect(authorize(entra, client_id=AZURE_CLI_CLIENT_ID), "consent_required", 65001)
    entra.pre_authorize(AZURE_CLI_CLIENT_ID)
    assert code_from(authorize(entra, client_id=AZURE_CLI_CLIENT_ID))


def test_reset_forgets_sign_in_state(entra: FakeEntra) -> None:
    entra.add_public_client(BRIDGE_CLIENT_ID, [LOOPBACK_CALLBACK])
    entra.pre_authorize(BRIDGE_CLIENT_ID)
    entra.identifier_uris.append("https://mcp.contoso.example/mcp")
    code_from(authorize(entra))
    entra.reset()
    assert entra.authorize_requests == []
    assert entra.issued_codes == 0
    assert entra.identifier_uris == [entra.app_id_uri]
    assert_error_page(authorize(entra), 700016)
