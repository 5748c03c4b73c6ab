"""Red-team review: the findings it proved (now fixed, so each test guards its fix) and attacks
verified to fail (regressions), where no other suite already covers them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from callers import ALICE
from conftest import settings_env
from fake_entra import FakeEntra
from shared.downstream.consent import consent_page, consent_url
from shared.downstream.retry import parse_retry_after
from shared.entra.keys import JwksCache
from shared.entra.tokens import TokenError, TokenValidator
from shared.features import schema
from shared.features.mrtr import InputRequired
from shared.features.resources import ResourceNotFound, ResourceRegistry
from shared.features.tools import ToolContext, ToolRegistry
from shared.http.messages import HttpRequest
from shared.http.pipeline import McpServer
from shared.protocol.engine import McpEngine
from shared.protocol.request_state import MAX_STATE_CHARS, InvalidRequestState, RequestStateCodec, StaleRequestState
from shared.settings import SettingsError, load_settings
from test_endpoint import PRM_PATH, ROUTES, auth, handler_for, make_server, request, rpc

MODERN = "2026-07-28"


def _engine(tools: ToolRegistry | None = None, resources: ResourceRegistry | None = None) -> McpEngine:
    return McpEngine(tools or ToolRegistry(), server_name="t", server_version="1", resources=resources,
                     request_state=RequestStateCodec(b"k" * 32))


def _call(engine: McpEngine, method: str, params: dict[str, Any], *, version: str = MODERN,
          capabilities: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    params = dict(params)
    headers = {"Content-Type": "application/json", "MCP-Protocol-Version": version}
    if version == MODERN:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version,
                           "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
        headers["Mcp-Method"] = method
        if method in ("tools/call", "resources/read"):
            headers["Mcp-Name"] = params.get("name") or params.get("uri")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    response = engine.handle("POST", headers, body, caller=ALICE)
    return response.status, response.json


# =====================================================================================================
# Findings, fixed
# =====================================================================================================


def test_resource_template_matching_is_linear() -> None:
    resources = ResourceRegistry()

    @resources.template("t://{a}-{b}-{c}")
    def item(a: str, b: str, c: str) -> str:
        """One item."""
        return a + b + c

    engine = _engine(resources=resources)
    uri = "t://" + "-" * 450 + "/"  # never matches; 1 MiB bodies would pin a worker for hours
    started = time.perf_counter()
    _, answer = _call(engine, "resources/read", {"uri": uri}, version="2025-11-25")
    elapsed = time.perf_counter() - started
    assert answer["error"]["code"] == -32002
    assert elapsed < 0.05, f"{elapsed:.2f} s for a {len(uri)}-character URI"


def test_template_variable_cannot_smuggle_a_slash() -> None:
    resources = ResourceRegistry()

    @resources.template("files://{name}")
    def read_file(name: str) -> str:
        """A file by name."""
        return name

    try:
        _, variables = resources.resolve("files://..%2F..%2Fhome%2Fsite%2Fwwwroot%2Flocal.settings.json")
    except ResourceNotFound:
        return
    assert "/" not in variables["name"], variables


def test_pattern_is_not_run_on_a_string_over_max_length(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = schema._compiled

    class Spy:
        def __init__(self, pattern: str) -> None:
            self._re = real(pattern)

        def search(self, value: str) -> Any:
            calls.append(len(value))
            return self._re.search(value)

    monkeypatch.setattr(schema, "_compiled", Spy)
    problems = schema.validate("a" * 1_000_000, {"type": "string", "maxLength": 64, "pattern": r"^(a|aa)*$"})
    assert problems  # refused for its length either way
    assert calls == [], "the pattern was evaluated on a 1 MB string that maxLength had already refused"


def _state_with_unicode(codec: RequestStateCodec, where: str) -> str:
    kid = codec.seal(None, binding="x", subject="y").split(".")[1]
    return "v1.é.e30.AAAA" if where == "kid" else f"v1.{kid}.é.AAAA"


@pytest.mark.parametrize("where", ["kid", "payload"])
def test_non_ascii_request_state_is_invalid_params(where: str, caplog: pytest.LogCaptureFixture) -> None:
    tools = ToolRegistry()

    @tools.tool
    def ask(ctx: ToolContext) -> str:
        """Asks for a retry."""
        if ctx.state is None:
            raise InputRequired(state={"step": 1})
        return "done"

    engine = _engine(tools)
    state = _state_with_unicode(engine.request_state, where)
    with caplog.at_level(logging.ERROR):
        _, answer = _call(engine, "tools/call", {"name": "ask", "arguments": {}, "requestState": state})
    assert answer["error"]["code"] == -32602, answer
    assert not [r for r in caplog.records if r.exc_info], "a client-supplied string produced a traceback"


@pytest.mark.parametrize("value", ["\u00b2", "9" * 400])
def test_retry_after_odd_values_never_raise_or_overflow(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or math.isfinite(seconds)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_literals_are_a_parse_error(token: str, literal: str) -> None:
    raw = ('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": %s}}' % literal).encode()  # noqa: UP031
    reply = request(raw=raw, headers={**auth(token), "MCP-Protocol-Version": "2025-11-25"})
    assert reply.status == 400 and reply.json["error"]["code"] == -32700, reply.body


def test_oversized_batch_is_refused_or_fully_answered(token: str) -> None:
    batch = [rpc("ping", id=i) for i in range(101)]
    reply = request(body=batch, headers=auth(token))
    assert reply.status == 400 or len(reply.json) == 101, f"{reply.status}, {len(reply.json)} answers for 101"


def test_batches_up_to_the_cap_are_fully_answered(token: str) -> None:
    from shared.protocol.engine import MAX_BATCH_MESSAGES

    full = request(body=[rpc("ping", id=i) for i in range(MAX_BATCH_MESSAGES)], headers=auth(token))
    assert full.status == 200 and len(full.json) == MAX_BATCH_MESSAGES
    over = request(body=[rpc("ping", id=i) for i in range(MAX_BATCH_MESSAGES + 1)], headers=auth(token))
    assert over.status == 400 and over.json["error"]["code"] == -32600


@pytest.mark.parametrize("uri", ["api://x y", 'api://x"y', "api://x\\y", "https://evil@mcp.contoso.com/mcp"])
def test_app_id_uri_with_breaking_characters_is_refused(app_env: dict[str, str], uri: str) -> None:
    with pytest.raises(SettingsError):
        load_settings({**app_env, "ENTRA_APP_ID_URI": uri})


@pytest.mark.parametrize("authority", ["https://user@login.microsoftonline.com", "https://LOGIN.microsoftonline.com"])
def test_authority_host_is_normalised_or_refused(app_env: dict[str, str], authority: str) -> None:
    try:
        settings = load_settings({**app_env, "AZURE_AUTHORITY_HOST": authority})
    except SettingsError:
        return
    assert settings.issuer.startswith("https://login.microsoftonline.com/"), settings.issuer


def test_client_secret_in_azure_is_flagged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WEBSITE_HOSTNAME", "contoso-mcp.azurewebsites.net")
    monkeypatch.setenv("OBO_CLIENT_SECRET", "not-a-real-secret")
    with caplog.at_level(logging.WARNING):
        McpServer.from_environment(ToolRegistry())
    assert any("OBO_CLIENT_SECRET" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# =====================================================================================================
# Attacks verified to fail (regressions)
# =====================================================================================================


class _RecordingFetcher:
    def __init__(self, fake: FakeEntra) -> None:
        self.fake = fake
        self.urls: list[str] = []

    def __call__(self, url: str) -> dict[str, Any]:
        self.urls.append(url)
        if url.endswith("openid-configuration"):
            return {"issuer": self.fake.issuer, "jwks_uri": self.fake.jwks_uri}
        return self.fake.jwks()


@pytest.mark.parametrize("kid", ["../../evil", "https://evil.example/keys", "%2e%2e%2f", "kid\r\nX: y"])
def test_kid_cannot_steer_which_url_is_fetched(fake_entra: FakeEntra, kid: str) -> None:
    fetcher = _RecordingFetcher(fake_entra)
    settings = load_settings(settings_env(fake_entra))
    keys = JwksCache(settings.openid_configuration_url, fetch_json=fetcher)
    validator = TokenValidator(tenant_id=settings.tenant_id, audience=settings.client_id, issuer=settings.issuer,
                               allowed_client_ids=settings.allowed_client_ids,
                               required_scopes=settings.required_scopes, keys=keys)
    with pytest.raises(TokenError):
        validator.validate(fake_entra.mint(headers={"kid": kid}))
    assert set(fetcher.urls) <= {settings.openid_configuration_url, fake_entra.jwks_uri}


def test_id_token_shaped_token_for_this_app_is_refused(fake_entra: FakeEntra) -> None:
    # An ID token from the consent flow (aud = this app, same issuer, ver 2.0) must never pass as an access token.
    id_token = fake_entra.mint(remove=["scp", "azp", "azpacr"], claims={"nonce": "n-0S6_WzA2Mj"})
    reply = request(body=rpc("ping"), headers=auth(id_token))
    assert reply.status in (401, 403)


def _raw(handler: Any, *, url: str, headers: dict[str, str], method: str = "POST", body: bytes = b"") -> Any:
    return handler(func.HttpRequest(method=method, url=url, headers=headers, params={}, body=body))


def test_forwarded_host_and_absolute_form_url_never_reach_published_urls(fake_entra: FakeEntra) -> None:
    hostile = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example",
               "X-Original-Host": "evil.example"}
    prm_fn, mcp_fn = ROUTES[PRM_PATH][0], ROUTES["/mcp"][0]
    document = json.loads(_raw(prm_fn, method="GET", url=f"https://evil.example{PRM_PATH}",
                               headers={"Host": "localhost:7071", **hostile}).get_body())
    assert urlsplit(document["resource"]).netloc == "localhost:7071" and "evil" not in json.dumps(document)
    challenge = _raw(mcp_fn, url="https://evil.example/mcp", body=json.dumps(rpc("ping")).encode(),
                     headers={"Host": "localhost:7071", "Content-Type": "application/json", **hostile})
    assert "evil" not in challenge.headers["WWW-Authenticate"]

    server = make_server(fake_entra, MCP_PUBLIC_BASE_URL="https://mcp.contoso.com")
    reply = request(PRM_PATH, method="GET", host="mcp.contoso.com", headers=hostile,
                    handler=handler_for(server, metadata=True))
    assert reply.json["resource"] == "https://mcp.contoso.com/mcp"


@pytest.mark.parametrize("host", ["localhost.", "localhost.:7071", "[::ffff:127.0.0.1]:7071", "127.1:7071",
                                  "0x7f.0.0.1", "0.0.0.0:7071", "[::]:7071", "2130706433", "localhost:7071 "])
def test_loopback_lookalike_hosts_are_refused(token: str, host: str) -> None:
    assert request(body=rpc("ping"), headers=auth(token), host=host).status == 421


def test_unauthenticated_bodies_are_never_parsed() -> None:
    # Auth runs before the body is read: a huge, deeply nested body costs an anonymous caller nothing.
    reply = request(raw=b"[" * 2_000_000)
    assert reply.status == 401


def test_long_bearer_header_is_refused_quickly() -> None:
    started = time.perf_counter()
    reply = request(body=rpc("ping"), headers={"Authorization": "Bearer " + "a" * 300_000 + "!"})
    assert reply.status == 400
    assert time.perf_counter() - started < 0.5


def test_refused_tokens_never_reach_on_behalf_of(fake_entra: FakeEntra) -> None:
    seen: list[str] = []

    def downstream(token: str, **_: Any) -> Any:
        seen.append(token)
        raise AssertionError("on-behalf-of must only see verified tokens")

    server = McpServer(load_settings(settings_env(fake_entra)), ToolRegistry(), downstream=downstream)
    for bad in (fake_entra.mint(expires_in=-3600), fake_entra.mint(scopes="Files.Read"),
                fake_entra.mint(client_id="9b1a7f0e-0c4c-4f55-9e39-3c8d2f6a1b2c"), fake_entra.mint_v1()):
        reply = server.handle_mcp(HttpRequest("POST", "http://localhost:7071/mcp",
                                              {"host": "localhost:7071", "content-type": "application/json",
                                               "authorization": f"Bearer {bad}"},
                                              json.dumps(rpc("ping")).encode()))
        assert reply.status in (401, 403)
    assert seen == []


def test_request_state_forgery_and_json_bombs_are_refused_before_parsing() -> None:
    codec, other = RequestStateCodec(b"a" * 32), RequestStateCodec(b"b" * 32)
    kid = codec.seal(None, binding="x", subject="s").split(".")[1]
    # Another key's MAC under this key's id: an integrity failure, not a "stale" pass-through.
    _, _, payload, mac = other.seal({"admin": True}, binding="x", subject="s").split(".")
    with pytest.raises(InvalidRequestState, match="integrity") as forged:
        codec.open(f"v1.{kid}.{payload}.{mac}", binding="x", subject="s")
    assert not isinstance(forged.value, StaleRequestState)
    # A nested-JSON bomb is never parsed without a valid MAC, and oversize state is refused on length.
    import base64

    bomb = base64.urlsafe_b64encode(b"[" * 40_000).decode().rstrip("=")
    started = time.perf_counter()
    with pytest.raises(InvalidRequestState, match="integrity"):
        codec.open(f"v1.{kid}.{bomb}.AAAA", binding="x", subject="s")
    with pytest.raises(InvalidRequestState, match="string issued"):
        codec.open("v1." + "A" * MAX_STATE_CHARS, binding="x", subject="s")
    assert time.perf_counter() - started < 0.5


def test_consent_url_parameters_cannot_be_injected() -> None:
    url = consent_url(authority_host="https://login.microsoftonline.com", tenant_id="t", client_id="c",
                      scopes=["https://graph.microsoft.com/User.Read"], public_base="https://mcp.contoso.com",
                      login_hint="a@b.example&redirect_uri=https://evil.example/#x\r\nLocation: https://evil")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "login.microsoftonline.com" and not parts.fragment
    assert query["redirect_uri"] == ["https://mcp.contoso.com/consent"]
    assert query["login_hint"] == ["a@b.example&redirect_uri=https://evil.example/#x\r\nLocation: https://evil"]
    assert "\r" not in url and "\n" not in url


@pytest.mark.parametrize("error", ["access_denied\n", "<script>alert(1)</script>", "x\" onload=\"alert(1)",
                                   "access_denied\n<img src=x onerror=alert(1)>"])
def test_consent_page_never_reflects_markup(error: str) -> None:
    reply = consent_page(HttpRequest("GET", "https://mcp.contoso.com/consent", {},
                                     query={"error": error, "error_description": "<b>x</b>", "code": "SECRETCODE"}))
    body = reply.body.decode()
    assert "<script>alert" not in body and "onerror" not in body and "onload" not in body and "<b>x" not in body
    assert "SECRETCODE" not in body
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'sha256-" in reply.headers["Content-Security-Policy"]
