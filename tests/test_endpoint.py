"""The MCP endpoint and the Protected Resource Metadata, through the real registered Functions handlers.

Requests are real ``azure.functions.HttpRequest`` objects handed to the user functions that
``function_app.app`` registers, so the routing table, the adapter and the whole pipeline run as
in Azure. Tokens come from the fake Entra tenant; nothing about auth is switched off. Tests that
need other settings or extra tools build their own ``McpServer`` and serve it through the same
adapter.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from conftest import ALLOWED_ORIGINS, settings_env
from fake_entra import FakeEntra
from harness import http_routes
from shared.entra.keys import JwksCache
from shared.entra.tokens import TokenValidator
from shared.features.tools import ClaimsChallengeError, ToolContext, ToolError, ToolRegistry
from shared.http.functions import serve
from shared.http.pipeline import McpServer
from shared.settings import load_settings

HOST = "localhost:7071"
BASE = f"http://{HOST}"
PRM_PATH = "/.well-known/oauth-protected-resource/mcp"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
OTHER_CLIENT = "9b1a7f0e-0c4c-4f55-9e39-3c8d2f6a1b2c"

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _registered() -> dict[str, tuple[Handler, frozenset[str]]]:
    return {route: (fn, methods) for route, (methods, fn) in http_routes(function_app.app).items()}


ROUTES = _registered()


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def challenge(self) -> dict[str, str]:
        value = self.headers["www-authenticate"]
        assert value.startswith("Bearer ")
        params: dict[str, str] = {}
        for part in value[len("Bearer "):].split(", "):
            name, _, quoted = part.partition("=")
            assert quoted.startswith('"') and quoted.endswith('"'), value
            params[name] = quoted[1:-1]
        return params


def request(
    path: str = "/mcp",
    *,
    method: str = "POST",
    body: Any = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    host: str = HOST,
    scheme: str = "http",
    handler: Callable[[func.HttpRequest], func.HttpResponse] | None = None,
) -> Reply:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    all_headers = {"Host": host}
    if method == "POST":
        all_headers.update({"Content-Type": "application/json", "Accept": ACCEPT})
    all_headers.update(headers or {})
    all_headers = {k: v for k, v in all_headers.items() if v is not None}
    query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
    req = func.HttpRequest(method=method, url=f"{scheme}://{host}{path}" + (f"?{query}" if query else ""),
                           headers=all_headers, params=dict(params or {}), body=data)
    if handler is None:
        fn, methods = ROUTES[path]
        assert method in methods, f"{method} {path} is not routed"
        response = fn(req)
    else:
        response = handler(req)
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                 response.get_body() or b"")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rpc(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return message


def meta(version: str = MODERN, **extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
        **extra,
    }


def modern(method: str, params: dict[str, Any] | None = None, *, name: str | None = None,
           id: Any = 1) -> tuple[dict[str, Any], dict[str, str]]:
    body = rpc(method, {**(params or {}), "_meta": meta()}, id=id)
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return body, headers


def call_modern(token: str, method: str, params: dict[str, Any] | None = None, *, name: str | None = None,
                handler: Handler | None = None, **header_changes: str | None) -> Reply:
    body, headers = modern(method, params, name=name)
    headers.update(auth(token))
    headers.update(header_changes)
    return request(body=body, headers=headers, handler=handler)


def legacy(token: str, method: str, params: dict[str, Any] | None = None, *, version: str | None = "2025-11-25",
           id: Any = 1, handler: Handler | None = None) -> Reply:
    headers = {**auth(token), "MCP-Protocol-Version": version}
    return request(body=rpc(method, params, id=id), headers=headers, handler=handler)


def no_session(reply: Reply) -> None:
    assert "mcp-session-id" not in reply.headers


@pytest.fixture(scope="module")
def expected_scope(fake_entra: FakeEntra) -> str:
    return f"api://{fake_entra.api_client_id}/user_impersonation"


# -- a separate server with test tools ---------------------------------------------------------------

test_tools = ToolRegistry()


@test_tools.tool
def echo(text: str, times: int = 1) -> str:
    """Repeat text."""
    return text * times


@test_tools.tool
def explode() -> str:
    """Always fails with an unexpected exception."""
    raise RuntimeError("secret internal detail /srv/app/db.py line 42")


@test_tools.tool
def refuse() -> str:
    """Fails the way a tool reports a problem to the model."""
    raise ToolError("the widget is unavailable")


@test_tools.tool
def version(ctx: ToolContext) -> str:
    """Report the protocol version this request was served as."""
    return ctx.request.protocol_version


@test_tools.tool(scopes=("Files.Read",))
def read_files() -> str:
    """Needs an extra delegated scope."""
    return "files"


@test_tools.tool
def needs_mfa() -> str:
    """Asks for a new sign-in with more claims (Conditional Access)."""
    raise ClaimsChallengeError("eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWV9fX0=")


def make_server(fake: FakeEntra, registry: ToolRegistry = test_tools, *, validator: TokenValidator | None = None,
                **env: str) -> McpServer:
    settings = load_settings({**settings_env(fake), **env})
    return McpServer(settings, registry, validator=validator)


def handler_for(server: McpServer, *, root: bool = False, metadata: bool = False) -> Handler:
    if metadata:
        return lambda req: serve(lambda r: server.handle_metadata(r, root=root), req)
    return lambda req: serve(server.handle_mcp, req)


@pytest.fixture(scope="module")
def tools_server(fake_entra: FakeEntra) -> Handler:
    return handler_for(make_server(fake_entra))


# == routing ==========================================================================================


def test_routes_are_registered() -> None:
    assert {"/mcp", PRM_PATH, "/.well-known/oauth-protected-resource"} <= set(ROUTES)
    assert {"POST", "GET", "DELETE"} <= ROUTES["/mcp"][1]
    assert "GET" in ROUTES[PRM_PATH][1]


# == authentication ===================================================================================


def test_no_token_gets_the_bare_challenge(expected_scope: str) -> None:
    reply = request(body=rpc("tools/list"))
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{BASE}{PRM_PATH}", scope="{expected_scope}"'
    )
    assert "error" not in reply.challenge
    assert reply.headers["content-type"].startswith("application/json")
    assert len(reply.body) < 300
    no_session(reply)


@pytest.mark.parametrize("scheme_header", ["Basic dXNlcjpwYXNz", "Digest x", "Negotiate abc", "", "Token abc"])
def test_other_schemes_get_the_bare_challenge(scheme_header: str) -> None:
    reply = request(body=rpc("tools/list"), headers={"Authorization": scheme_header})
    assert reply.status == 401
    assert "error" not in reply.challenge
    assert reply.challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"


def test_bad_tokens_get_invalid_token(fake_entra: FakeEntra, expected_scope: str) -> None:
    for bad in ("garbage", fake_entra.mint(expires_in=-3600), fake_entra.mint(alg="HS256"),
                fake_entra.mint(claims={"aud": "00000003-0000-0000-c000-000000000000"}), fake_entra.mint_v1()):
        reply = request(body=rpc("tools/list"), headers=auth(bad))
        assert reply.status == 401, bad
        challenge = reply.challenge
        assert challenge["error"] == "invalid_token"
        assert challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"
        assert challenge["scope"] == expected_scope
        assert bad not in reply.body.decode() and bad not in reply.headers["www-authenticate"]
        assert reply.json["error"] == "invalid_token"


@pytest.mark.parametrize("kind", ["missing scope", "app-only"])
def test_insufficient_scope(fake_entra: FakeEntra, expected_scope: str, kind: str) -> None:
    token = fake_entra.mint(scopes="Files.Read") if kind == "missing scope" else fake_entra.mint_app_only()
    reply = request(body=rpc("tools/list"), headers=auth(token))
    assert reply.status == 403
    assert reply.challenge["error"] == "insufficient_scope"
    assert expected_scope in reply.challenge["scope"].split()
    assert reply.challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"


def test_client_not_allowed_gets_403_without_a_challenge(fake_entra: FakeEntra) -> None:
    reply = request(body=rpc("tools/list"), headers=auth(fake_entra.mint(client_id=OTHER_CLIENT)))
    assert reply.status == 403
    # No WWW-Authenticate: signing in again cannot help, so the client must not loop.
    assert "www-authenticate" not in reply.headers
    assert reply.json["error"] == "access_denied"


def test_token_in_query_string_is_refused(token: str) -> None:
    for headers in ({}, auth(token)):
        reply = request(body=rpc("tools/list"), headers=headers, params={"access_token": token})
        assert reply.status in (400, 401)
        assert reply.status != 200
        assert token not in reply.body.decode()
        assert reply.challenge["error"] == "invalid_request"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(token: str, scheme: str) -> None:
    reply = request(body=rpc("ping"), headers={"Authorization": f"{scheme} {token}"})
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    "value",
    [
        "Bearer {t}, Bearer {t}",  # the host folds duplicate headers into one comma-joined value
        "Bearer {t},Bearer {t}",
        "Bearer {t} {t}",
        "Bearer {t}, Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer\t{t}",
        "Bearer {t}\"",
    ],
)
def test_malformed_or_duplicate_authorization_is_refused(token: str, value: str) -> None:
    header = value.format(t=token)
    reply = request(body=rpc("ping"), headers={"Authorization": header})
    assert reply.status in (400, 401), reply.status
    assert token not in reply.body.decode()
    assert token not in reply.headers.get("www-authenticate", "")


def test_valid_token_is_served(token: str) -> None:
    reply = legacy(token, "tools/list")
    assert reply.status == 200
    assert [t["name"] for t in reply.json["result"]["tools"]][:1] == ["whoami"]
    no_session(reply)


# == keys unavailable =================================================================================


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _validator(fake: FakeEntra, **cache: Any) -> TokenValidator:
    s = load_settings(settings_env(fake))
    return TokenValidator(tenant_id=s.tenant_id, audience=s.client_id, issuer=s.issuer,
                          allowed_client_ids=s.allowed_client_ids, required_scopes=s.required_scopes,
                          keys=JwksCache(s.openid_configuration_url, **cache))


def test_cold_start_with_key_endpoint_down_is_503_then_recovers() -> None:
    clock = _Clock()
    with FakeEntra() as down:
        down.fail_mode = "503"
        handler = handler_for(make_server(down, validator=_validator(down, clock=clock)))
        token = down.mint()
        reply = legacy(token, "tools/list", handler=handler)
        assert reply.status == 503
        assert reply.headers["retry-after"].isdigit()
        assert "www-authenticate" not in reply.headers  # the token is not blamed
        assert token not in reply.body.decode()
        down.fail_mode = None
        clock.now += 5
        assert legacy(token, "tools/list", handler=handler).status == 200


def test_valid_tokens_pass_when_the_key_endpoint_goes_down_after_warm_up(entra: FakeEntra) -> None:
    token = entra.mint()
    assert legacy(token, "ping").status == 200  # the session app's keys are warm
    # And a server that tries to refresh on every request (zero lifetime and cool-down) keeps its last good keys.
    eager = handler_for(make_server(entra, validator=_validator(entra, lifetime=0, refresh_cooldown=0)))
    assert legacy(token, "ping", handler=eager).status == 200
    for mode in ("503", "reset"):
        entra.fail_mode = mode  # type: ignore[assignment]
        assert legacy(entra.mint(), "ping").status == 200
        assert legacy(entra.mint(), "ping", handler=eager).status == 200
    assert entra.jwks_fetches >= 2


# == HTTP methods =====================================================================================


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(token: str, method: str) -> None:
    reply = request(method=method, headers={**auth(token), "Accept": "text/event-stream",
                                            "Mcp-Session-Id": "abc"})
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    no_session(reply)


# == Protected Resource Metadata ======================================================================


def test_path_inserted_metadata(fake_entra: FakeEntra, expected_scope: str) -> None:
    reply = request(PRM_PATH, method="GET")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert "max-age" in reply.headers["cache-control"]
    document = reply.json
    assert document["resource"] == f"{BASE}/mcp"
    assert document["authorization_servers"] == [f"{fake_entra.authority}/{fake_entra.tenant_id}/v2.0"]
    assert document["scopes_supported"] == [expected_scope]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["resource_name"]
    # No api:// value in resource: clients compare it with the URL they use.
    assert not document["resource"].startswith("api://")


def test_root_metadata(fake_entra: FakeEntra, expected_scope: str) -> None:
    reply = request("/.well-known/oauth-protected-resource", method="GET")
    assert reply.status == 200
    assert reply.json["resource"] == BASE  # RFC 9728 §3.3: the URL the well-known path was derived from
    assert reply.json["authorization_servers"] == [f"{fake_entra.authority}/{fake_entra.tenant_id}/v2.0"]
    assert reply.json["scopes_supported"] == [expected_scope]
    assert "max-age" in reply.headers["cache-control"]


def test_metadata_is_public_and_cors_readable() -> None:
    reply = request(PRM_PATH, method="GET", headers={"Origin": "https://any.example"})
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "*"
    preflight = request(PRM_PATH, method="OPTIONS", headers={"Origin": "https://any.example",
                                                             "Access-Control-Request-Method": "GET"})
    assert preflight.status == 204
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_challenge_points_at_a_metadata_document_that_exists() -> None:
    challenge = request(body=rpc("ping")).challenge
    path = challenge["resource_metadata"].removeprefix(BASE)
    assert request(path, method="GET").json["resource"] == f"{BASE}/mcp"


# == Origin, Host and public base URL ===================================================================


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:6275", "null", "http://localhost",
                                    "https://localhost:7071"])
def test_foreign_origin_is_403(token: str, origin: str) -> None:
    reply = request(body=rpc("ping"), headers={**auth(token), "Origin": origin})
    assert reply.status == 403
    assert "access-control-allow-origin" not in reply.headers


@pytest.mark.parametrize("origin", [ALLOWED_ORIGINS, BASE])
def test_allowed_and_same_origin_get_cors_headers(token: str, origin: str) -> None:
    reply = request(body=rpc("ping"), headers={**auth(token), "Origin": origin})
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == origin
    assert "WWW-Authenticate" in reply.headers["access-control-expose-headers"]
    assert "Origin" in reply.headers["vary"]
    # The challenge must be readable by a browser client too.
    unauthenticated = request(body=rpc("ping"), headers={"Origin": origin})
    assert unauthenticated.status == 401
    assert unauthenticated.headers["access-control-allow-origin"] == origin


def test_cors_preflight() -> None:
    reply = request(method="OPTIONS", headers={"Origin": ALLOWED_ORIGINS, "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "authorization, mcp-protocol-version"})
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGINS
    assert "POST" in reply.headers["access-control-allow-methods"]
    allowed = reply.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"):
        assert name in allowed
    assert request(method="OPTIONS", headers={"Origin": "https://evil.example"}).status == 403


def test_cors_preflight_allows_mcp_param_headers_it_is_asked_for() -> None:
    asked = "authorization, mcp-param-region, Mcp-Param-Tenant_Id, x-evil header"
    reply = request(method="OPTIONS", headers={"Origin": ALLOWED_ORIGINS, "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": asked})
    allowed = [h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")]
    assert "mcp-param-region" in allowed and "mcp-param-tenant_id" in allowed
    assert "x-evil header" not in allowed


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7071", "192.168.1.10:7071", "localhost.evil.example",
                                  "127.0.0.1:1@evil.example", "localhost:7071/x"])
def test_unknown_host_is_refused(token: str, host: str) -> None:
    for path, method in (("/mcp", "POST"), (PRM_PATH, "GET"), ("/.well-known/oauth-protected-resource", "GET")):
        reply = request(path, method=method, body=rpc("ping") if method == "POST" else None,
                        headers=auth(token), host=host)
        assert reply.status == 421, (host, path)
        assert "evil" not in reply.body.decode()
        if path != "/mcp":  # the metadata endpoints speak OAuth errors, not JSON-RPC
            assert reply.json["error"] == "invalid_request" and "jsonrpc" not in reply.json


def test_metadata_refuses_other_methods_with_allow_get(fake_entra: FakeEntra) -> None:
    # The Functions route admits only GET and OPTIONS; this is what a direct caller of handle_metadata gets.
    reply = request(PRM_PATH, method="POST", body=rpc("ping"), handler=handler_for(make_server(fake_entra),
                                                                                   metadata=True))
    assert reply.status == 405 and reply.headers["allow"] == "GET"
    assert b"error" not in reply.body  # not dressed up as an OAuth error code


@pytest.mark.parametrize("host", ["127.0.0.1:7071", "[::1]:7071", "localhost"])
def test_loopback_hosts_are_their_own_base(host: str) -> None:
    reply = request(body=rpc("ping"), host=host)
    assert reply.challenge["resource_metadata"] == f"http://{host}{PRM_PATH}"
    assert request(PRM_PATH, method="GET", host=host).json["resource"] == f"http://{host}/mcp"


def test_public_base_url_and_website_hostname(fake_entra: FakeEntra) -> None:
    server = make_server(fake_entra, MCP_PUBLIC_BASE_URL="https://mcp.contoso.com",
                         WEBSITE_HOSTNAME="contoso-mcp.azurewebsites.net")
    mcp, prm_doc, root = handler_for(server), handler_for(server, metadata=True), \
        handler_for(server, metadata=True, root=True)
    expected = "https://mcp.contoso.com/.well-known/oauth-protected-resource/mcp"
    # Azure's front end forwards http to the worker; the published URLs are the canonical https ones.
    for host in ("mcp.contoso.com", "MCP.contoso.com:443", "contoso-mcp.azurewebsites.net"):
        reply = request(body=rpc("ping"), host=host, handler=mcp)
        assert reply.status == 401, host
        assert reply.challenge["resource_metadata"] == expected
        assert request(PRM_PATH, method="GET", host=host, handler=prm_doc).json["resource"] == \
            "https://mcp.contoso.com/mcp"
        assert request("/.well-known/oauth-protected-resource", method="GET", host=host,
                       handler=root).json["resource"] == "https://mcp.contoso.com"
    for host in ("evil.example", "mcp.contoso.com.evil.example", "mcp.contoso.com:8443", "azurewebsites.net"):
        assert request(body=rpc("ping"), host=host, handler=mcp).status == 421, host
    # The public origin is an allowed browser origin; the azurewebsites one is not the canonical origin.
    token = fake_entra.mint()
    ok = request(body=rpc("ping"), host="mcp.contoso.com", handler=mcp,
                 headers={**auth(token), "Origin": "https://mcp.contoso.com"})
    assert ok.status == 200
    assert request(body=rpc("ping"), host="mcp.contoso.com", handler=mcp,
                   headers={**auth(token), "Origin": "http://mcp.contoso.com"}).status == 403


def test_website_hostname_alone(fake_entra: FakeEntra) -> None:
    server = make_server(fake_entra, WEBSITE_HOSTNAME="contoso-mcp.azurewebsites.net")
    reply = request(body=rpc("ping"), host="contoso-mcp.azurewebsites.net", handler=handler_for(server))
    assert reply.challenge["resource_metadata"] == (
        "https://contoso-mcp.azurewebsites.net/.well-known/oauth-protected-resource/mcp"
    )
    assert request(body=rpc("ping"), host="other.azurewebsites.net", handler=handler_for(server)).status == 421


def test_custom_app_id_uri_scopes_in_challenge_and_metadata(fake_entra: FakeEntra) -> None:
    server = make_server(fake_entra, ENTRA_APP_ID_URI="https://mcp.contoso.com/mcp",
                         MCP_PUBLIC_BASE_URL="https://mcp.contoso.com")
    reply = request(body=rpc("ping"), host="mcp.contoso.com", handler=handler_for(server))
    assert reply.challenge["scope"] == "https://mcp.contoso.com/mcp/user_impersonation"
    document = request(PRM_PATH, method="GET", host="mcp.contoso.com",
                       handler=handler_for(server, metadata=True)).json
    assert document["scopes_supported"] == ["https://mcp.contoso.com/mcp/user_impersonation"]
    assert document["resource"] == "https://mcp.contoso.com/mcp"


# == transport errors ===================================================================================


def test_parse_error(token: str) -> None:
    for raw in (b"{not json", b"", b"\xff\xfe\x00", b"[" * 100_000):
        reply = request(raw=raw, headers=auth(token))
        assert reply.status == 400, raw[:10]
        assert reply.json["error"]["code"] == -32700
        assert reply.json["id"] is None


@pytest.mark.parametrize(
    "body",
    [{"id": 1, "method": "ping"}, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, "ping", 42, None,
     {"jsonrpc": "2.0", "id": 1}, {"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"},
     {"jsonrpc": "2.0", "id": 1, "method": 7}],
)
def test_invalid_request(token: str, body: Any) -> None:
    reply = request(raw=json.dumps(body).encode(), headers=auth(token))
    assert reply.status == 400
    assert reply.json["error"]["code"] == -32600


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None, "application/jsonx"])
def test_wrong_content_type(token: str, content_type: str | None) -> None:
    reply = request(body=rpc("ping"), headers={**auth(token), "Content-Type": content_type})
    assert reply.status == 415


def test_content_type_with_charset_is_fine(token: str) -> None:
    reply = request(body=rpc("ping"), headers={**auth(token), "Content-Type": "application/json; charset=utf-8"})
    assert reply.status == 200


def test_body_over_1_mib_is_413(token: str) -> None:
    big = json.dumps(rpc("tools/call", {"name": "whoami", "arguments": {"pad": "x" * (1024 * 1024)}})).encode()
    reply = request(raw=big, headers=auth(token))
    assert reply.status == 413
    just_under = json.dumps(rpc("ping", {"pad": "x" * (1024 * 1024 - 200)})).encode()
    assert len(just_under) <= 1024 * 1024
    assert request(raw=just_under, headers=auth(token)).status == 200


# == 2026-07-28 =========================================================================================


def test_server_discover(token: str) -> None:
    reply = call_modern(token, "server/discover")
    assert reply.status == 200, reply.body
    result = reply.json["result"]
    assert MODERN in result["supportedVersions"]
    assert {"2025-11-25", "2025-06-18", "2025-03-26"} <= set(result["supportedVersions"])
    assert "tools" in result["capabilities"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "entra-mcp-server"
    assert result["resultType"] == "complete"
    assert isinstance(result["ttlMs"], int) and result["cacheScope"] in ("private", "public")
    no_session(reply)


def test_modern_tools_list(token: str) -> None:
    reply = call_modern(token, "tools/list")
    assert reply.status == 200
    result = reply.json["result"]
    assert result["resultType"] == "complete"
    assert isinstance(result["ttlMs"], int) and result["ttlMs"] > 0
    assert result["cacheScope"] in ("private", "public")
    names = [t["name"] for t in result["tools"]]
    assert "whoami" in names
    assert names == [t["name"] for t in call_modern(token, "tools/list").json["result"]["tools"]]  # deterministic


def test_modern_tools_call_whoami(token: str, fake_entra: FakeEntra) -> None:
    reply = call_modern(token, "tools/call", {"name": "whoami", "arguments": {}}, name="whoami")
    assert reply.status == 200, reply.body
    result = reply.json["result"]
    assert result["resultType"] == "complete"
    assert result.get("isError", False) is False
    assert result["structuredContent"]["oid"] == fake_entra.user_oid("alice")


@pytest.mark.parametrize(
    "change",
    [
        {"MCP-Protocol-Version": None},
        {"Mcp-Method": None},
        {"Mcp-Name": None},
        {"Mcp-Method": "tools/list"},
        {"Mcp-Name": "other"},
        {"Mcp-Name": "WHOAMI"},
        {"MCP-Protocol-Version": "2025-11-25"},
        {"Mcp-Name": "=?base64?not base64!?="},
    ],
)
def test_modern_header_mismatch(token: str, change: dict[str, str | None]) -> None:
    reply = call_modern(token, "tools/call", {"name": "whoami", "arguments": {}}, name="whoami", **change)
    assert reply.status == 400, reply.body
    assert reply.json["error"]["code"] == -32020


def test_modern_mcp_method_is_required_for_every_request(token: str) -> None:
    reply = call_modern(token, "tools/list", **{"Mcp-Method": None})
    assert reply.status == 400
    assert reply.json["error"]["code"] == -32020


def test_base64_sentinel_mcp_name_is_accepted(token: str) -> None:
    encoded = "=?base64?" + base64.b64encode(b"whoami").decode() + "?="
    reply = call_modern(token, "tools/call", {"name": "whoami", "arguments": {}}, name=encoded)
    assert reply.status == 200, reply.body
    assert reply.json["result"].get("isError", False) is False


def test_unsupported_modern_version(token: str) -> None:
    body = rpc("tools/list", {"_meta": meta("2099-01-01")})
    headers = {**auth(token), "MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}
    reply = request(body=body, headers=headers)
    assert reply.status == 400
    error = reply.json["error"]
    assert error["code"] == -32022
    assert MODERN in error["data"]["supported"] and "2025-03-26" in error["data"]["supported"]


@pytest.mark.parametrize("missing", ["io.modelcontextprotocol/protocolVersion",
                                     "io.modelcontextprotocol/clientCapabilities"])
def test_meta_without_a_required_field(token: str, missing: str) -> None:
    params = {"_meta": {k: v for k, v in meta().items() if k != missing}}
    reply = request(body=rpc("tools/list", params),
                    headers={**auth(token), "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    assert reply.status == 400
    assert reply.json["error"]["code"] == -32602


def test_modern_header_without_meta(token: str) -> None:
    reply = request(body=rpc("tools/list"),
                    headers={**auth(token), "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    assert reply.status == 400
    assert reply.json["error"]["code"] == -32602


@pytest.mark.parametrize("method", ["no/such/method", "initialize", "ping"])
def test_modern_unknown_method_is_404(token: str, method: str) -> None:
    reply = call_modern(token, method)
    assert reply.status == 404
    assert reply.json["error"]["code"] == -32601


def test_modern_session_headers_are_ignored(token: str) -> None:
    reply = call_modern(token, "tools/list", **{"Mcp-Session-Id": "stale-session", "Last-Event-ID": "9"})
    assert reply.status == 200
    no_session(reply)


# == legacy (2025) ======================================================================================


@pytest.mark.parametrize(("requested", "answered"), [("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"),
                                                    ("2025-03-26", "2025-03-26"), ("2024-11-05", "2025-11-25"),
                                                    ("1999-01-01", "2025-11-25"), (MODERN, "2025-11-25")])
def test_initialize_negotiation(token: str, requested: str, answered: str) -> None:
    params = {"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    reply = request(body=rpc("initialize", params), headers=auth(token))
    assert reply.status == 200, reply.body
    result = reply.json["result"]
    assert result["protocolVersion"] == answered
    assert result["serverInfo"]["name"] == "entra-mcp-server"
    assert "tools" in result["capabilities"]
    no_session(reply)


def test_request_without_version_header_is_served_as_2025_03_26(token: str, tools_server: Handler) -> None:
    reply = legacy(token, "tools/call", {"name": "version", "arguments": {}}, version=None, handler=tools_server)
    assert reply.json["result"]["content"][0]["text"] == "2025-03-26"
    reply = legacy(token, "tools/call", {"name": "version", "arguments": {}}, version="2025-06-18",
                   handler=tools_server)
    assert reply.json["result"]["content"][0]["text"] == "2025-06-18"


@pytest.mark.parametrize("value", ["2024-11-05", "garbage", "", "2025-11-25, 2025-06-18"])
def test_invalid_version_header_is_400(token: str, value: str) -> None:
    reply = legacy(token, "tools/list", version=value)
    assert reply.status == 400


def test_notifications_get_202_without_body(token: str) -> None:
    for method in ("notifications/initialized", "notifications/cancelled", "notifications/whatever"):
        reply = legacy(token, method, id=None)
        assert reply.status == 202, method
        assert reply.body == b""
        no_session(reply)


def test_ping(token: str) -> None:
    reply = legacy(token, "ping", id="abc")
    assert reply.status == 200
    assert reply.json == {"jsonrpc": "2.0", "id": "abc", "result": {}}


def test_batches_in_2025_03_26(token: str) -> None:
    batch = [rpc("ping", id=1), rpc("notifications/initialized", id=None), rpc("tools/list", id=2)]
    reply = request(body=batch, headers=auth(token))
    assert reply.status == 200, reply.body
    answers = {item["id"]: item for item in reply.json}
    assert set(answers) == {1, 2}
    assert answers[1]["result"] == {}
    assert "tools" in answers[2]["result"]
    only_notifications = request(body=[rpc("notifications/initialized", id=None)], headers=auth(token))
    assert only_notifications.status == 202
    for version in ("2025-06-18", "2025-11-25"):
        reply = request(body=batch, headers={**auth(token), "MCP-Protocol-Version": version})
        assert reply.status == 400
    assert request(body=[], headers=auth(token)).status == 400


def test_legacy_unknown_method(token: str) -> None:
    reply = legacy(token, "no/such/method")
    assert reply.json["error"]["code"] == -32601


# == tools ==============================================================================================


def test_unknown_tool(token: str) -> None:
    reply = legacy(token, "tools/call", {"name": "no_such_tool", "arguments": {}})
    assert reply.json["error"]["code"] == -32602
    modern_reply = call_modern(token, "tools/call", {"name": "no_such_tool", "arguments": {}}, name="no_such_tool")
    assert modern_reply.json["error"]["code"] == -32602


@pytest.mark.parametrize("arguments", [{"text": 5}, {}, {"text": "a", "times": "two"}, {"text": "a", "extra": 1},
                                       "not an object"])
def test_invalid_arguments_are_an_error_result(token: str, tools_server: Handler, arguments: Any) -> None:
    reply = legacy(token, "tools/call", {"name": "echo", "arguments": arguments}, handler=tools_server)
    assert reply.status == 200
    result = reply.json["result"]
    assert result["isError"] is True
    assert "echo" in result["content"][0]["text"]


def test_tool_call_works(token: str, tools_server: Handler) -> None:
    reply = legacy(token, "tools/call", {"name": "echo", "arguments": {"text": "ab", "times": 2}},
                   handler=tools_server)
    assert reply.json["result"]["content"][0]["text"] == "abab"
    assert reply.json["result"].get("isError") in (None, False)


def test_tool_exception_is_never_a_500(token: str, tools_server: Handler, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        for reply in (legacy(token, "tools/call", {"name": "explode", "arguments": {}}, handler=tools_server),
                      call_modern(token, "tools/call", {"name": "explode", "arguments": {}}, name="explode",
                                  handler=tools_server)):
            assert reply.status == 200
            assert reply.json["result"]["isError"] is True
            text = reply.body.decode()
            assert "Traceback" not in text and "secret internal detail" not in text and "db.py" not in text
    # The details go to the log, for the operator.
    assert any("explode" in r.getMessage() for r in caplog.records)


def test_tool_error_message_reaches_the_model(token: str, tools_server: Handler) -> None:
    reply = legacy(token, "tools/call", {"name": "refuse", "arguments": {}}, handler=tools_server)
    assert reply.json["result"] == {"content": [{"type": "text", "text": "the widget is unavailable"}],
                                    "isError": True}


def test_tool_needing_an_extra_scope(fake_entra: FakeEntra, tools_server: Handler, expected_scope: str) -> None:
    reply = legacy(fake_entra.mint(), "tools/call", {"name": "read_files", "arguments": {}}, handler=tools_server)
    assert reply.status == 403
    challenge = reply.challenge
    assert challenge["error"] == "insufficient_scope"
    scopes = challenge["scope"].split()
    assert f"api://{fake_entra.api_client_id}/Files.Read" in scopes
    assert expected_scope in scopes
    assert challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"
    ok = legacy(fake_entra.mint(scopes="user_impersonation Files.Read"), "tools/call",
                {"name": "read_files", "arguments": {}}, handler=tools_server)
    assert ok.status == 200 and ok.json["result"]["content"][0]["text"] == "files"


def test_tool_claims_challenge(token: str, tools_server: Handler) -> None:
    for reply in (legacy(token, "tools/call", {"name": "needs_mfa", "arguments": {}}, handler=tools_server),
                  call_modern(token, "tools/call", {"name": "needs_mfa", "arguments": {}}, name="needs_mfa",
                              handler=tools_server)):
        assert reply.status == 401
        challenge = reply.challenge
        assert challenge["error"] == "insufficient_claims"
        assert challenge["claims"] == "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWV9fX0="
        assert challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"


def test_never_a_session_id(token: str) -> None:
    replies = [
        request(body=rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                        "clientInfo": {"name": "t", "version": "1"}}), headers=auth(token)),
        legacy(token, "tools/list"),
        legacy(token, "notifications/initialized", id=None),
        call_modern(token, "server/discover"),
        request(body=rpc("ping")),
    ]
    for reply in replies:
        no_session(reply)


# == logging hygiene ====================================================================================


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(record.exc_text or "")
        parts.append(repr(vars(record)))  # every attribute, the structured extras included
    parts.append(caplog.text)
    return "\n".join(parts)


def test_the_raw_token_never_reaches_the_log(fake_entra: FakeEntra, tools_server: Handler,
                                             all_logs: pytest.LogCaptureFixture) -> None:
    tokens = {
        "valid": fake_entra.mint(),
        "expired": fake_entra.mint(expires_in=-3600),
        "forged": fake_entra.mint(claims={"aud": "00000003-0000-0000-c000-000000000000"}),
        "client": fake_entra.mint(client_id=OTHER_CLIENT),
        "scope": fake_entra.mint(scopes="Files.Read"),
        "app": fake_entra.mint_app_only(),
        "kid": fake_entra.mint(headers={"kid": "unknown-kid"}),
    }
    for token in tokens.values():
        legacy(token, "tools/list")
        request(body=rpc("ping"), headers=auth(token), params={"access_token": token})
        request(body=rpc("ping"), headers={"Authorization": f"Bearer {token}, Bearer {token}"})
    valid = tokens["valid"]
    legacy(valid, "tools/call", {"name": "explode", "arguments": {}}, handler=tools_server)
    legacy(valid, "tools/call", {"name": "needs_mfa", "arguments": {}}, handler=tools_server)
    legacy(valid, "tools/call", {"name": "read_files", "arguments": {}}, handler=tools_server)
    call_modern(valid, "tools/call", {"name": "whoami", "arguments": {}}, name="whoami")
    assert all_logs.records, "expected request logs"
    logged = _everything_logged(all_logs)
    for name, token in tokens.items():
        assert token not in logged, name
        assert token.split(".")[2] not in logged, name  # not even the signature


# == robustness: whatever an authenticated client sends, never a 500 ====================================

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_methods = st.sampled_from(["initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/read",
                            "prompts/get", "resources/list", "prompts/list", "completion/complete",
                            "logging/setLevel", "notifications/initialized", "x"])
_meta_values = st.one_of(
    st.just(meta()),
    st.dictionaries(st.sampled_from(list(meta())), _json_values, max_size=3),
    _json_values,
)
_params = st.one_of(
    _json_values,
    st.fixed_dictionaries({}, optional={"_meta": _meta_values, "name": st.sampled_from(["whoami", "echo", "x", 3]),
                                        "arguments": _json_values, "uri": st.text(max_size=10),
                                        "cursor": _json_values, "protocolVersion": st.text(max_size=12),
                                        "inputResponses": _json_values, "requestState": _json_values}),
)
_messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": _methods},
    optional={"id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False)),
              "params": _params},
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "MCP-Protocol-Version": st.sampled_from([MODERN, "2025-11-25", "2025-03-26", "bogus", ""]),
        "Mcp-Method": _methods,
        "Mcp-Name": st.sampled_from(["whoami", "=?base64?d2hvYW1p?=", "=?base64?!!?=", "", "x"]),
        "Accept": st.sampled_from(["application/json", "text/event-stream", "*/*", ""]),
    },
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=st.one_of(_messages, st.lists(_messages, max_size=3), _json_values), headers=_headers)
def test_fuzzed_requests_never_500(token: str, tools_server: Handler, body: Any, headers: dict[str, str]) -> None:
    for handler in (None, tools_server):
        reply = request(body=body, headers={**auth(token), **headers}, handler=handler)
        assert reply.status < 500, (reply.status, reply.body[:300])
        no_session(reply)
        if reply.body:
            payload = reply.json
            assert "Traceback" not in reply.body.decode()
            assert isinstance(payload, dict | list)
        else:
            assert reply.status in (202, 204)
