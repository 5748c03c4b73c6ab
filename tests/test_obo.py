"""On-behalf-of end to end: fake Entra token endpoint, fake Graph, fake managed identity endpoint, real azure-identity.

The product runs its production path: the MCP request is authenticated by the pipeline, get_my_profile asks for a
Graph token, OnBehalfOfCredential exchanges the caller's token at the (fake) Entra token endpoint over verified TLS,
and the Graph helper calls the (fake) Graph with the downstream token.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import REPO_ROOT, settings_env
from fake_entra import JWT_BEARER_GRANT, FakeEntra, aadsts_error
from fake_graph import FakeGraph
from fake_identity_endpoint import FakeIdentityEndpoint
from shared.downstream.consent import consent_page, consent_url
from shared.downstream.obo import OnBehalfOfService, is_microsoft_authority
from shared.downstream.retry import RetryBudget, parse_retry_after
from shared.http.messages import HttpRequest, HttpResponse
from shared.http.pipeline import McpServer
from shared.settings import Settings, SettingsError, load_settings
from tools import tools as forker_tools

SECRET = "obo-test-secret-value-0123456789"
BASE = "http://localhost:7071"
# Short budgets keep fault tests fast; the shape (attempts, Retry-After, deadline) is what is under test.
FAST = RetryBudget(total_seconds=4.0, attempts=3, connect_timeout=1.0, read_timeout=1.0, backoff_seconds=0.05)
MI_CLIENT_ID = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


# ---- fixtures and helpers -----------------------------------------------------------------------------------------
@pytest.fixture
def graph(entra: FakeEntra) -> Iterator[FakeGraph]:
    with FakeGraph(entra) as fake:
        yield fake


def obo_settings(entra: FakeEntra, graph: FakeGraph, **extra: str) -> Settings:
    env = {**settings_env(entra), "GRAPH_API_BASE_URL": graph.base_url, **extra}
    if not any(k.startswith("OBO_") for k in extra):
        env["OBO_CLIENT_SECRET"] = SECRET
    return load_settings(env)


def obo_server(settings: Settings, budget: RetryBudget = FAST, **options: Any) -> tuple[McpServer, OnBehalfOfService]:
    service = OnBehalfOfService.from_settings(settings, budget=budget, **options)
    return McpServer(settings, forker_tools, downstream=service.for_assertion), service


def call_tool(server: McpServer, token: str, name: str = "get_my_profile") -> HttpResponse:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}})
    headers = {
        "host": "localhost:7071",
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    return server.handle_mcp(HttpRequest("POST", f"{BASE}/mcp", headers, body.encode()))


def result_of(response: HttpResponse) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.headers, response.body[:300])
    return response.json["result"]


def text_of(result: dict[str, Any]) -> str:
    return result["content"][0]["text"]


def graph_scope(graph: FakeGraph) -> str:
    return f"{graph.origin}/User.Read"


# ---- the OBO request on the wire ----------------------------------------------------------------------------------
def test_client_secret_mode_sends_the_exact_obo_form(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    token = entra.mint(user="alice")

    result = result_of(call_tool(server, token))

    assert not result.get("isError"), result
    assert result["structuredContent"]["user_principal_name"] == "alice@contoso.example"
    [form] = entra.token_requests
    assert form["grant_type"] == JWT_BEARER_GRANT == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert form["requested_token_use"] == "on_behalf_of"
    assert form["assertion"] == token  # the caller's token goes to Entra, and only there
    assert form["client_id"] == entra.api_client_id
    assert form["client_secret"] == SECRET
    assert "client_assertion" not in form and "client_assertion_type" not in form
    # MSAL adds the OpenID scopes (to get an id_token and refresh token); the resource scope is the Graph one.
    assert set(form["scope"].split()) == {graph_scope(graph), "openid", "profile", "offline_access"}


def _self_signed(tmp_path: Path, password: bytes | None = None) -> tuple[Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "obo-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path = tmp_path / "obo.pem"
    path.write_bytes(pem + cert.public_bytes(serialization.Encoding.PEM))
    return path, cert


def test_certificate_mode_signs_a_client_assertion(entra: FakeEntra, graph: FakeGraph, tmp_path: Path) -> None:
    path, cert = _self_signed(tmp_path, password=b"pfx-pass")
    settings = obo_settings(entra, graph, OBO_CLIENT_CERTIFICATE_PATH=str(path),
                            OBO_CLIENT_CERTIFICATE_PASSWORD="pfx-pass")
    server, service = obo_server(settings)
    assert service.mode == "certificate"

    assert not result_of(call_tool(server, entra.mint())).get("isError")

    [form] = entra.token_requests
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_secret" not in form
    assertion = form["client_assertion"]
    claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"], audience=entra.token_endpoint)
    assert claims["iss"] == claims["sub"] == entra.api_client_id
    header = jwt.get_unverified_header(assertion)
    # x5t (SHA-1) or x5t#S256 thumbprint of the certificate, base64url (MSAL keeps the padding).
    thumbprints = {base64.urlsafe_b64encode(cert.fingerprint(h)).rstrip(b"=").decode()
                   for h in (hashes.SHA1(), hashes.SHA256())}
    assert (header.get("x5t") or header.get("x5t#S256") or "").rstrip("=") in thumbprints


def test_bad_certificate_stops_start_up_naming_the_setting(entra: FakeEntra, graph: FakeGraph, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SettingsError) as info:
        OnBehalfOfService.from_settings(obo_settings(entra, graph, OBO_CLIENT_CERTIFICATE_PATH=str(bogus)))
    assert "OBO_CLIENT_CERTIFICATE_PATH" in info.value.problems


def test_managed_identity_mode_uses_a_cached_federated_assertion(
    entra: FakeEntra, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeIdentityEndpoint(entra, client_id=MI_CLIENT_ID) as identity:
        monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", identity.header)
        server, service = obo_server(obo_settings(entra, graph, OBO_MANAGED_IDENTITY_CLIENT_ID=MI_CLIENT_ID))
        assert service.mode == "managed_identity"

        for user in ("alice", "bob", "carol"):
            for _ in range(3):
                assert not result_of(call_tool(server, entra.mint(user=user))).get("isError")

        assert identity.calls == 1  # one managed identity token serves every user's exchange
        [params] = identity.requests
        assert params == {"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange",
                          "client_id": MI_CLIENT_ID}
        assert entra.obo_calls == 9  # a new token (assertion) per call here; the cache is per assertion
        for form in entra.token_requests:
            assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            assert form["client_assertion"] == identity.issued[0]
            assert "client_secret" not in form
        claims = jwt.decode(identity.issued[0], entra.public_key_pem(), algorithms=["RS256"],
                            audience="api://AzureADTokenExchange")
        assert claims["sub"] == identity.principal_id


def test_managed_identity_endpoint_down_is_a_clear_tool_error(
    entra: FakeEntra, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeIdentityEndpoint(entra, client_id=MI_CLIENT_ID) as identity:
        identity.fail_status = 500
        monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", identity.header)
        server, _ = obo_server(obo_settings(entra, graph, OBO_MANAGED_IDENTITY_CLIENT_ID=MI_CLIENT_ID))

        result = result_of(call_tool(server, entra.mint()))

        assert result["isError"] is True
        assert "managed identity" in text_of(result)
        assert entra.obo_calls == 0
        assert identity.calls == FAST.attempts


# ---- token reuse and isolation ------------------------------------------------------------------------------------
def test_100_calls_by_one_user_cost_one_obo_call(entra: FakeEntra, graph: FakeGraph) -> None:
    server, service = obo_server(obo_settings(entra, graph))
    token = entra.mint(user="alice")

    for _ in range(100):
        assert not result_of(call_tool(server, token)).get("isError")

    print(f"\nmeasured: 100 get_my_profile calls by 1 user -> {entra.obo_calls} token-endpoint call(s)")
    assert entra.obo_calls == 1
    assert graph.requests == 100
    assert service.cached_credentials == 1


def test_100_calls_by_10_users_in_parallel_cost_10_obo_calls(entra: FakeEntra, graph: FakeGraph) -> None:
    server, service = obo_server(obo_settings(entra, graph))
    users = [f"user{i}" for i in range(10)]
    tokens = {user: entra.mint(user=user) for user in users}

    def run(user: str) -> tuple[str, dict[str, Any]]:
        return user, result_of(call_tool(server, tokens[user]))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, [users[i % 10] for i in range(100)]))

    print(f"\nmeasured: 100 get_my_profile calls by 10 users -> {entra.obo_calls} token-endpoint call(s)")
    assert entra.obo_calls == 10
    assert service.cached_credentials == 10
    for user, result in results:  # nobody ever sees another user's profile
        assert not result.get("isError"), result
        assert result["structuredContent"]["user_principal_name"] == f"{user}@contoso.example"
    # Each user's exchange used that user's own assertion.
    assert sorted(f["assertion"] for f in entra.token_requests) == sorted(tokens.values())


def test_graph_never_sees_the_clients_token(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    client_tokens = [entra.mint(user=u) for u in ("alice", "bob")]
    for token in client_tokens * 3:
        assert not result_of(call_tool(server, token)).get("isError")

    sent = {a.removeprefix("Bearer ") for a in graph.authorizations}
    assert sent and sent <= set(entra.issued_obo_tokens)
    assert not sent & set(client_tokens)
    for token in sent:  # a token for Graph, minted for this server's app, not the MCP audience
        claims = jwt.decode(token, entra.public_key_pem(), algorithms=["RS256"], audience=graph.origin)
        assert claims["azp"] == entra.api_client_id


def test_two_users_never_share_a_token_under_concurrency(entra: FakeEntra, graph: FakeGraph) -> None:
    service = OnBehalfOfService.from_settings(obo_settings(entra, graph), budget=FAST)
    tokens = {u: entra.mint(user=u) for u in ("alice", "bob", "carol", "dave")}

    def fetch(user: str) -> tuple[str, str]:
        return user, service.for_assertion(tokens[user], public_base=BASE).get_token(graph_scope(graph))

    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(fetch, [u for u in tokens for _ in range(25)]))

    by_user: dict[str, set[str]] = {}
    for user, token in got:
        by_user.setdefault(user, set()).add(token)
    assert all(len(t) == 1 for t in by_user.values())  # single flight: one token per user
    owners = {}
    for user, (token,) in ((u, tuple(t)) for u, t in by_user.items()):
        owners[token] = user
        assert jwt.decode(token, options={"verify_signature": False})["oid"] == entra.user_oid(user)
    assert len(owners) == 4
    assert entra.obo_calls == 4


def test_cache_is_bounded_and_expires_with_the_assertion(entra: FakeEntra, graph: FakeGraph) -> None:
    service = OnBehalfOfService.from_settings(obo_settings(entra, graph), budget=FAST, max_entries=3)
    scope = graph_scope(graph)
    for i in range(5):
        service.for_assertion(entra.mint(user=f"u{i}"), expires_at=time.time() + 3600).get_token(scope)
    assert service.cached_credentials == 3

    token = entra.mint(user="late")
    service.for_assertion(token, expires_at=time.time() - 1).get_token(scope)
    service.for_assertion(token, expires_at=time.time() - 1).get_token(scope)
    assert entra.obo_calls == 7  # an expired entry is never reused


def test_new_sign_in_gets_its_own_exchange(entra: FakeEntra, graph: FakeGraph) -> None:
    # Keyed by assertion, not by user: a fresh token (say, after an MFA step-up) is exchanged anew.
    server, _ = obo_server(obo_settings(entra, graph))
    result_of(call_tool(server, entra.mint(user="alice")))
    result_of(call_tool(server, entra.mint(user="alice")))
    assert entra.obo_calls == 2


# ---- errors a user can act on -------------------------------------------------------------------------------------
def test_missing_consent_gives_a_consent_url_then_works_after_consent(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    token = entra.mint(user="alice")
    entra.require_consent(graph_scope(graph))

    result = result_of(call_tool(server, token))

    assert result["isError"] is True
    text = text_of(result)
    assert "consent" in text and "admin" in text
    url = next(word for word in text.split() if "/oauth2/v2.0/authorize?" in word)
    parts = urlsplit(url)
    authorize = f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0/authorize"
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == authorize
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["client_id"] == entra.api_client_id
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == f"{BASE}/consent"
    assert query["scope"] == graph_scope(graph)
    assert query["prompt"] == "consent"
    assert query["login_hint"] == "alice@contoso.example"
    assert token not in text

    # The user consents and retries at once: Entra is asked again (MSAL's 60 s memory of the 400 is bypassed).
    entra.grant_consent(graph_scope(graph))
    result = result_of(call_tool(server, token))
    assert not result.get("isError"), result
    assert entra.obo_calls == 2


def call_tool_modern(server: McpServer, token: str, capabilities: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> HttpResponse:
    """A 2026-07-28 tools/call get_my_profile (per-request _meta, mirrored headers)."""
    params: dict[str, Any] = {"name": "get_my_profile", "arguments": {}, **(extra or {}), "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    headers = {
        "host": "localhost:7071", "authorization": f"Bearer {token}", "content-type": "application/json",
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call", "mcp-name": "get_my_profile",
    }
    return server.handle_mcp(HttpRequest("POST", f"{BASE}/mcp", headers, body.encode()))


def test_consent_with_a_2026_client_is_a_url_elicitation_then_a_retry(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.require_consent(graph_scope(graph))
    token = entra.mint()
    url_mode = {"elicitation": {"url": {}}}

    asked = result_of(call_tool_modern(server, token, url_mode))

    assert asked["resultType"] == "input_required"
    (key, request), = asked["inputRequests"].items()
    assert request["method"] == "elicitation/create" and request["params"]["mode"] == "url"
    consent = urlsplit(request["params"]["url"])
    assert consent.path == f"/{entra.tenant_id}/oauth2/v2.0/authorize"
    assert parse_qs(consent.query)["redirect_uri"] == [f"{BASE}/consent"]
    assert token not in json.dumps(asked)

    # The user consents in the browser; the client retries with the elicitation's answer.
    entra.grant_consent(graph_scope(graph))
    retry = {"inputResponses": {key: {"action": "accept"}}, "requestState": asked.get("requestState")}
    done = result_of(call_tool_modern(server, token, url_mode, {k: v for k, v in retry.items() if v is not None}))

    assert done["resultType"] == "complete" and not done.get("isError"), done
    assert done["structuredContent"]["user_principal_name"]
    assert entra.obo_calls == 2


def test_consent_error_raises_url_elicitation(entra: FakeEntra, graph: FakeGraph) -> None:
    from shared.features.tools import UrlElicitationRequired

    service = OnBehalfOfService.from_settings(obo_settings(entra, graph), budget=FAST)
    entra.queue_token_response(400, aadsts_error(65001, "invalid_grant", "No consent.", suberror="consent_required"))
    with pytest.raises(UrlElicitationRequired) as info:
        service.for_assertion(entra.mint(), public_base="https://mcp.contoso.com").get_token(graph_scope(graph))
    assert "redirect_uri=https%3A%2F%2Fmcp.contoso.com%2Fconsent" in info.value.url
    assert entra.obo_calls == 1  # not retried


def test_claims_challenge_becomes_401_insufficient_claims(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    claims = '{"access_token":{"capolids":{"essential":true,"values":["c1b3e0a2-0000-4000-8000-000000000001"]}}}'
    entra.queue_token_response(400, aadsts_error(50079, "interaction_required", "Due to a configuration change "
                                                 "you must enroll in multi-factor authentication.", claims=claims))

    response = call_tool(server, entra.mint())

    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_claims"' in challenge
    assert f'claims="{base64.b64encode(claims.encode()).decode()}"' in challenge
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert entra.obo_calls == 1


def test_throttling_is_retried_after_retry_after(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.queue_token_response(429, aadsts_error(50196, "temporarily_unavailable", "Throttled."),
                               headers={"Retry-After": "1"})
    started = time.monotonic()

    result = result_of(call_tool(server, entra.mint()))

    assert not result.get("isError"), result
    assert time.monotonic() - started >= 1.0
    assert entra.obo_calls == 2


def test_retry_after_beyond_the_budget_fails_fast_with_the_wait(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.queue_token_response(429, aadsts_error(50196, "temporarily_unavailable", "Throttled."),
                               headers={"Retry-After": "120"})
    started = time.monotonic()

    result = result_of(call_tool(server, entra.mint()))

    assert result["isError"] is True
    assert "throttling" in text_of(result) and "120 seconds" in text_of(result)
    assert time.monotonic() - started < 2
    assert entra.obo_calls == 1


def test_entra_outage_is_retried_then_reported(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.queue_token_response(503, aadsts_error(90033, "temporarily_unavailable", "Down."), times=FAST.attempts)
    started = time.monotonic()

    result = result_of(call_tool(server, entra.mint()))

    assert result["isError"] is True
    assert "unavailable" in text_of(result)
    assert entra.obo_calls == FAST.attempts
    assert time.monotonic() - started < FAST.total_seconds + 1


def test_slow_token_endpoint_times_out_within_the_budget(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.token_delay_seconds = 3.0  # longer than FAST.read_timeout
    started = time.monotonic()

    result = result_of(call_tool(server, entra.mint()))

    elapsed = time.monotonic() - started
    assert result["isError"] is True
    assert "did not answer in time" in text_of(result)
    assert elapsed < FAST.total_seconds + 1.5


def test_misconfigured_credential_names_the_code_not_the_secret(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    entra.expected_client_secret = "the-real-secret"

    result = result_of(call_tool(server, entra.mint()))

    assert result["isError"] is True
    assert "AADSTS7000215" in text_of(result) and "administrator" in text_of(result)
    assert SECRET not in text_of(result)
    assert entra.obo_calls == 1


def test_expired_assertion_asks_to_sign_in_again(entra: FakeEntra, graph: FakeGraph) -> None:
    from shared.features.tools import ToolError

    service = OnBehalfOfService.from_settings(obo_settings(entra, graph), budget=FAST)
    entra.queue_token_response(400, aadsts_error(500133, "invalid_grant", "Assertion is not within its valid "
                                                 "time range."))
    with pytest.raises(ToolError, match="sign in again"):
        service.for_assertion(entra.mint()).get_token(graph_scope(graph))


def test_graph_throttling_is_retried(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    graph.queue_response(429, {"error": {"code": "TooManyRequests", "message": "Slow down"}},
                         headers={"Retry-After": "1"})
    started = time.monotonic()
    result = result_of(call_tool(server, entra.mint()))
    assert not result.get("isError"), result
    assert graph.requests == 2 and time.monotonic() - started >= 1.0


def test_graph_errors_and_outages_become_tool_errors(entra: FakeEntra, graph: FakeGraph) -> None:
    server, _ = obo_server(obo_settings(entra, graph))
    token = entra.mint()

    graph.queue_response(403, {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}})
    result = result_of(call_tool(server, token))
    assert result["isError"] is True and "403 Authorization_RequestDenied" in text_of(result)
    assert graph.requests == 1  # not retried

    graph.queue_response(503, {"error": {"code": "serviceNotAvailable", "message": "Down"}}, times=FAST.attempts)
    result = result_of(call_tool(server, token))
    assert result["isError"] is True and "unavailable" in text_of(result)
    assert graph.requests == 1 + FAST.attempts

    graph.delay_seconds = 3.0
    started = time.monotonic()
    result = result_of(call_tool(server, token))
    assert result["isError"] is True and "did not answer in time" in text_of(result)
    assert time.monotonic() - started < FAST.total_seconds + 1.5
    assert entra.obo_calls == 1  # the token was reused throughout


def test_no_token_assertion_or_secret_in_logs(
    entra: FakeEntra, graph: FakeGraph, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    server, _ = obo_server(obo_settings(entra, graph))
    client_token = entra.mint(user="alice")
    result_of(call_tool(server, client_token))
    entra.queue_token_response(400, aadsts_error(65001, "invalid_grant", "No consent.", suberror="consent_required"))
    result_of(call_tool(server, entra.mint(user="bob")))
    entra.queue_token_response(503, aadsts_error(90033, "temporarily_unavailable", "Down."), times=5)
    result_of(call_tool(server, entra.mint(user="carol")))
    with FakeIdentityEndpoint(entra, client_id=MI_CLIENT_ID) as identity:
        monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", identity.header)
        mi_server, _ = obo_server(obo_settings(entra, graph, OBO_MANAGED_IDENTITY_CLIENT_ID=MI_CLIENT_ID))
        result_of(call_tool(mi_server, entra.mint(user="dave")))
        secrets = {SECRET, identity.header, *identity.issued}

    secrets |= {f["assertion"] for f in entra.token_requests} | set(entra.issued_obo_tokens) | {client_token}
    logged = "\n".join(
        record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    assert caplog.records  # the flows above did log (warnings for the failures)
    for secret in secrets:
        assert secret not in logged
        assert secret.split(".")[-1] not in logged  # not even a token's signature


# ---- configuration and wiring -------------------------------------------------------------------------------------
def test_instance_discovery_only_off_for_non_microsoft_hosts(entra: FakeEntra, graph: FakeGraph) -> None:
    for host in ("https://login.microsoftonline.com", "https://login.microsoftonline.us",
                 "https://login.chinacloudapi.cn", "https://LOGIN.MICROSOFTONLINE.COM"):
        assert is_microsoft_authority(host)
    assert not is_microsoft_authority(entra.authority)
    assert not is_microsoft_authority("https://login.microsoftonline.com.evil.example")

    local = OnBehalfOfService.from_settings(obo_settings(entra, graph))
    assert local._new_credential("x")._instance_discovery is False  # what disable_instance_discovery=True sets
    public = OnBehalfOfService(tenant_id=entra.tenant_id, client_id=entra.api_client_id,
                               authority_host="https://login.microsoftonline.com",
                               credential=local_credential(SECRET))
    assert public._new_credential("x")._instance_discovery is None  # azure-identity's default: discovery on


def local_credential(secret: str) -> Any:
    from shared.settings import OboCredentialSettings

    return OboCredentialSettings(client_secret=secret)


def test_from_environment_wires_obo(entra: FakeEntra, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("GRAPH_API_BASE_URL", graph.base_url)
    server = McpServer.from_environment(forker_tools)

    result = result_of(call_tool(server, entra.mint(user="erin")))

    assert result["structuredContent"] == {
        "display_name": "Erin Example", "user_principal_name": "erin@contoso.example",
        "mail": "erin@contoso.example", "job_title": "Engineer", "office_location": None,
    }


def test_without_obo_settings_the_tool_says_so(entra: FakeEntra) -> None:
    server = McpServer(load_settings(settings_env(entra)), forker_tools)
    result = result_of(call_tool(server, entra.mint()))
    assert result["isError"] is True and "on-behalf-of" in text_of(result)


def test_azure_identity_is_not_imported_at_start_up() -> None:
    code = ("import sys, function_app, shared.downstream.obo, shared.graph, shared.downstream.consent; "
            "print('azure.identity' in sys.modules, 'msal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_on_behalf_of_is_not_loaded_without_its_settings() -> None:
    # shared.graph (imported by the sample tools) needs only the leaf shared.downstream.retry: an app without OBO_*
    # settings never loads shared.downstream.obo at start-up.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBO_")}
    code = "import sys, function_app, shared.graph; print('shared.downstream.obo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


def test_graph_failures_log_only_the_first_path_segment(
    entra: FakeEntra, graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.downstream.graph import GraphClient
    from shared.features.tools import ToolError

    caplog.set_level(logging.DEBUG, logger="mcp.graph")
    graph.queue_response(503, {"error": {"code": "serviceNotAvailable", "message": "Down"}}, times=FAST.attempts)
    with pytest.raises(ToolError, match="unavailable"):
        GraphClient(graph.base_url, budget=FAST).get("/users/erin@contoso.example/photo", "not-a-real-token")
    logged = [r.getMessage() for r in caplog.records if r.name == "mcp.graph"]
    assert logged and all("/users..." in line for line in logged), logged
    assert not any("erin" in line for line in logged), logged


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    assert 25 <= (parse_retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT")) or 0) <= 31


# ---- the consent landing page -------------------------------------------------------------------------------------
def test_consent_page_thanks_the_user_and_never_reflects_the_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    code = "0.AAAA-secret-authorization-code-" + hashlib.sha256(b"x").hexdigest()
    response = consent_page(HttpRequest("GET", f"{BASE}/consent?code={code}&state=abc&session_state=s"))

    assert response.status == 200
    assert b"Consent recorded" in response.body
    assert code.encode() not in response.body
    assert code not in caplog.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_consent_page_reports_a_declined_consent_safely() -> None:
    response = consent_page(HttpRequest("GET", f"{BASE}/consent?error=access_denied&error_description=<b>x</b>"))
    assert response.status == 400 and b"access_denied" in response.body and b"<b>x</b>" not in response.body
    hostile = consent_page(HttpRequest("GET", f"{BASE}/consent?error=%3Cscript%3Ealert(1)%3C/script%3E"))
    assert b"alert(1)" not in hostile.body and b"unknown_error" in hostile.body
    assert consent_page(HttpRequest("POST", f"{BASE}/consent")).status == 405


def test_consent_route_is_served_by_the_function_app() -> None:
    import function_app
    from harness import FunctionsHarness

    with FunctionsHarness(function_app.app) as served:
        response = requests.get(f"{served.url}/consent?code=abc", timeout=10)
    assert response.status_code == 200
    assert "Consent recorded" in response.text


def test_consent_url_shape() -> None:
    url = consent_url(authority_host="https://login.microsoftonline.com/", tenant_id="t", client_id="c",
                      scopes=["https://graph.microsoft.com/User.Read", "https://graph.microsoft.com/Mail.Read"],
                      public_base="https://mcp.contoso.com/")
    assert url == (
        "https://login.microsoftonline.com/t/oauth2/v2.0/authorize?client_id=c&response_type=code"
        "&scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read+https%3A%2F%2Fgraph.microsoft.com%2FMail.Read"
        "&prompt=consent&response_mode=query&redirect_uri=https%3A%2F%2Fmcp.contoso.com%2Fconsent"
    )


# ---- on-behalf-of is for users only (app-only callers: tests/test_app_callers.py end to end) -------------------------
def test_an_app_only_assertion_is_refused_before_any_exchange(entra: FakeEntra, graph: FakeGraph) -> None:
    import asyncio

    from shared.downstream.obo import APP_CALLER_MESSAGE
    from shared.features.tools import ToolError

    service = OnBehalfOfService.from_settings(obo_settings(entra, graph), budget=FAST)
    for assertion in (entra.mint_app_only(["Tools.Execute.All"]), entra.mint_app_only(remove=["idtyp"]),
                      "not-a-token", "a.b.c"):  # unreadable: refused too, never sent to Entra
        downstream = service.for_assertion(assertion, public_base=BASE, expires_at=time.time() + 600)
        assert downstream.for_a_user is False
        with pytest.raises(ToolError) as caught:
            downstream.get_token(graph_scope(graph))
        assert str(caught.value) == APP_CALLER_MESSAGE
        with pytest.raises(ToolError):
            asyncio.run(downstream.get_token_async(graph_scope(graph)))
    assert entra.obo_calls == 0 and service.cached_credentials == 0

    user = service.for_assertion(entra.mint(user="alice", claims={"roles": ["Tools.Execute.All"]}), public_base=BASE)
    assert user.for_a_user is True and user.get_token(graph_scope(graph))
    assert entra.obo_calls == 1
