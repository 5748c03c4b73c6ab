"""Logging hygiene: no secret ever reaches a log, and every request writes exactly one structured request line.

Everything logged at DEBUG by every logger (the product's, urllib3's, azure-core's, MSAL's) is captured while
representative flows of the other suites run: the bad-token corpus, valid calls in both protocol revisions,
transport errors, key-endpoint faults, tool failures and on-behalf-of (success, consent, outage, bad credential,
Graph failures). Nothing logged may contain a token, an assertion, a secret, a refresh token or anything shaped
like a JWT. And the MCP endpoint writes exactly one structured request line per request (logger ``mcp.request``)
with method, tool, caller oid, client app, status and duration, for Application Insights.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from conftest import settings_env
from fake_entra import VSCODE_CLIENT_ID, FakeEntra, aadsts_error, foreign_private_key
from fake_graph import FakeGraph
from shared.downstream.obo import OnBehalfOfService
from shared.entra.tokens import TokenValidator
from shared.http.pipeline import McpServer
from shared.settings import load_settings
from support import (
    JWT_LIKE,
    Clock,
    Reply,
    as_function,
    auth,
    call_modern,
    capture_all_logs,
    fast_fetcher,
    handler_for,
    legacy,
    private_server,
    request,
    request_log_lines,
    rpc,
)
from test_bad_tokens import CORPUS, send
from test_endpoint import make_server
from test_endpoint import test_tools as endpoint_tools
from test_obo import FAST, SECRET, obo_settings
from tools import tools as forker_tools

REQUEST_LINE = re.compile(
    r"^mcp request method=(?P<method>\S+) tool=(?P<tool>\S+) oid=(?P<oid>\S+) client=(?P<client>\S+) "
    r"status=(?P<status>\d{3}) duration_ms=(?P<duration>\d+\.\d)$"
)


class Flows:
    """Runs representative flows and remembers every secret they involved."""

    def __init__(self, fake: FakeEntra) -> None:
        self.fake = fake
        self.secrets: set[str] = set()

    def token(self, **kwargs: Any) -> str:
        token = self.fake.mint(**kwargs)
        self.secrets.add(token)
        return token

    def corpus(self) -> None:
        for case in CORPUS:
            attempt = case.make(self.fake)
            self.secrets.update(attempt.secrets)
            send(attempt)

    def valid_calls(self) -> None:
        token = self.token(user="alice")
        legacy(token, "tools/list")
        legacy(token, "tools/call", {"name": "whoami", "arguments": {}})
        call_modern(token, "tools/call", {"name": "whoami", "arguments": {}}, name="whoami")
        call_modern(token, "server/discover")
        legacy(token, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                     "clientInfo": {"name": "t", "version": "1"}})
        legacy(token, "notifications/initialized", id=None)
        legacy(token, "tools/call", {"name": "get_my_profile", "arguments": {}})  # no OBO configured: a tool error

    def transport_errors(self) -> None:
        token = self.token()
        request(raw=b"{not json", headers=auth(token))
        request(body=rpc("ping"), headers={**auth(token), "Content-Type": "text/plain"})
        request(body=rpc("ping"), headers=auth(token), host="evil.example")
        request(body=rpc("ping"), headers={**auth(token), "Origin": "https://evil.example"})
        request(method="GET", headers=auth(token))
        request(method="OPTIONS", headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"})
        request(raw=json.dumps(rpc("ping", {"pad": "x" * (1024 * 1024 + 1)})).encode(), headers=auth(token))
        # A token pasted into a tool argument: arguments are the tool's business, never the log's.
        legacy(token, "tools/call", {"name": "whoami", "arguments": {"leak": self.token(user="bob")}})

    def tool_failures(self) -> None:
        handler = handler_for(make_server(self.fake, endpoint_tools))
        token = self.token()
        for name, arguments in (("explode", {}), ("refuse", {}), ("needs_mfa", {}), ("read_files", {}),
                                ("echo", {"text": self.token(user="carol"), "times": "two"}), ("nope", {})):
            legacy(token, "tools/call", {"name": name, "arguments": arguments}, handler=handler)

    def key_faults(self) -> None:
        with FakeEntra() as idp:
            clock = Clock()
            server, _ = private_server(idp, clock=clock, fetcher=fast_fetcher())
            handler = as_function(server)
            idp.fail_mode = "503"
            cold = idp.mint()
            self.secrets.add(cold)
            legacy(cold, "tools/list", handler=handler)  # 503: cold start with the key endpoint down
            idp.fail_mode = None
            clock.advance(5)
            warm = idp.mint()
            self.secrets.add(warm)
            legacy(warm, "tools/list", handler=handler)
            idp.fail_mode = "reset"
            clock.advance(301)
            for _ in range(3):
                forged = idp.mint(key=foreign_private_key(), headers={"kid": "unknown"})
                self.secrets.add(forged)
                legacy(forged, "tools/list", handler=handler)  # a refresh attempt that fails


@pytest.fixture
def graph(entra: FakeEntra) -> Any:
    with FakeGraph(entra) as fake:
        yield fake


def obo_flows(flows: Flows, entra: FakeEntra, graph: FakeGraph) -> None:
    settings = obo_settings(entra, graph)
    service = OnBehalfOfService.from_settings(settings, budget=FAST)
    handler = as_function(McpServer(settings, forker_tools, downstream=service.for_assertion))

    def profile(user: str) -> Reply:
        return legacy(flows.token(user=user), "tools/call", {"name": "get_my_profile", "arguments": {}},
                      handler=handler)

    profile("alice")
    entra.queue_token_response(400, aadsts_error(65001, "invalid_grant", "No consent.", suberror="consent_required"))
    profile("bob")
    entra.queue_token_response(503, aadsts_error(90033, "temporarily_unavailable", "Down."), times=FAST.attempts)
    profile("carol")
    entra.queue_token_response(400, aadsts_error(50076, "interaction_required", "MFA.",
                                                 claims='{"access_token":{"capolids":{"essential":true}}}'))
    profile("dave")
    graph.queue_response(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Expired"}})
    profile("erin")
    entra.expected_client_secret = "the-right-one"
    profile("frank")
    flows.secrets.update(f["assertion"] for f in entra.token_requests if f.get("assertion"))
    flows.secrets.update(entra.issued_obo_tokens)
    flows.secrets.add(SECRET)
    flows.secrets.add("the-right-one")


def assert_nothing_secret(logged: str, secrets: set[str]) -> None:
    assert secrets, "the flows involved no secret: the check would prove nothing"
    for secret in secrets:
        assert secret not in logged, secret[:12] + "..."
        for segment in secret.split("."):
            if len(segment) >= 16:
                assert segment not in logged, f"a {len(segment)}-character piece of a token was logged"
    found = JWT_LIKE.findall(logged)
    assert not found, f"{len(found)} JWT-shaped string(s) logged, e.g. {found[0][:20]}..."
    assert "fake-refresh-" not in logged  # refresh tokens from the token endpoint
    assert "client_secret=" not in logged and "client_assertion=" not in logged and "assertion=" not in logged


def test_nothing_secret_is_ever_logged(fake_entra: FakeEntra, entra: FakeEntra, graph: FakeGraph) -> None:
    flows = Flows(fake_entra)
    with capture_all_logs() as logs:
        flows.corpus()
        flows.valid_calls()
        flows.transport_errors()
        flows.tool_failures()
        flows.key_faults()
        obo_flows(flows, entra, graph)
    names = {record.name for record in logs.records}
    # The capture really saw the product's loggers and the HTTP/identity libraries underneath.
    assert {"mcp.request", "mcp.auth.jwks", "mcp.obo"} <= names, names
    assert any(name.startswith(("urllib3", "azure", "msal")) for name in names), names
    assert any(record.exc_info for record in logs.records)  # tracebacks were captured and checked too
    assert_nothing_secret(logs.text(), flows.secrets)


# -- one structured request line per request --------------------------------------------------------------------


def _one_line(run: Callable[[], Reply]) -> tuple[Reply, logging.LogRecord]:
    with capture_all_logs() as logs:
        reply = run()
    lines = request_log_lines(logs.records)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    return reply, lines[0]


def _fields(record: logging.LogRecord) -> dict[str, str]:
    match = REQUEST_LINE.match(record.getMessage())
    assert match, record.getMessage()
    assert record.levelno == logging.INFO
    return match.groupdict()


# The flat ``extra`` attributes of the request line (what OpenTelemetry log handlers export).
ATTRIBUTES = ("mcp_method", "mcp_tool", "caller_oid", "caller_client_app", "http_status", "duration_ms")


def test_one_request_line_for_a_tool_call_with_every_field(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(user="alice")
    reply, record = _one_line(lambda: call_modern(token, "tools/call", {"name": "whoami", "arguments": {}},
                                                  name="whoami"))
    assert reply.status == 200
    fields = _fields(record)
    assert fields["method"] == "tools/call" and fields["tool"] == "whoami"
    assert fields["oid"] == fake_entra.user_oid("alice") and fields["client"] == VSCODE_CLIENT_ID
    assert fields["status"] == "200" and float(fields["duration"]) >= 0
    attributes = {key: getattr(record, key) for key in ATTRIBUTES}
    assert attributes == {"mcp_method": "tools/call", "mcp_tool": "whoami",
                          "caller_oid": fake_entra.user_oid("alice"), "caller_client_app": VSCODE_CLIENT_ID,
                          "http_status": 200, "duration_ms": attributes["duration_ms"]}
    assert attributes["duration_ms"] >= 0


def _requests(fake: FakeEntra) -> dict[str, Callable[[], Reply]]:
    token = fake.mint()
    tools_handler = handler_for(make_server(fake, endpoint_tools))
    return {
        "tools/list": lambda: legacy(token, "tools/list"),
        "notification": lambda: legacy(token, "notifications/initialized", id=None),
        "batch": lambda: request(body=[rpc("ping", id=1), rpc("tools/list", id=2)], headers=auth(token)),
        "no token": lambda: request(body=rpc("tools/list")),
        "bad token": lambda: legacy(fake.mint(expires_in=-3600), "tools/list"),
        "client not allowed": lambda: legacy(fake.mint(client_id="9b1a7f0e-0c4c-4f55-9e39-3c8d2f6a1b2c"), "ping"),
        "token in query": lambda: request(body=rpc("ping"), headers=auth(token), params={"access_token": token}),
        "parse error": lambda: request(raw=b"{", headers=auth(token)),
        "wrong content type": lambda: request(body=rpc("ping"), headers={**auth(token), "Content-Type": "text/plain"}),
        "unknown host": lambda: request(body=rpc("ping"), headers=auth(token), host="evil.example"),
        "foreign origin": lambda: request(body=rpc("ping"), headers={**auth(token), "Origin": "https://evil.example"}),
        "preflight": lambda: request(method="OPTIONS", headers={"Origin": "http://localhost:6274"}),
        "GET": lambda: request(method="GET", headers=auth(token)),
        "tool raises": lambda: legacy(token, "tools/call", {"name": "explode", "arguments": {}},
                                      handler=tools_handler),
        "tool scope": lambda: legacy(token, "tools/call", {"name": "read_files", "arguments": {}},
                                     handler=tools_handler),
        "claims challenge": lambda: legacy(token, "tools/call", {"name": "needs_mfa", "arguments": {}},
                                           handler=tools_handler),
        # Once the pipeline's last-resort 500 (see test_fuzz.test_lone_surrogates_are_not_a_500).
        "lone surrogate id": lambda: request(raw=b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
                                             headers=auth(token)),
    }


UNAUTHENTICATED = {"no token", "bad token", "client not allowed", "token in query", "unknown host", "foreign origin",
                   "preflight"}


def test_exactly_one_request_line_per_request_whatever_the_outcome(fake_entra: FakeEntra) -> None:
    statuses = {}
    for name, run in _requests(fake_entra).items():
        reply, record = _one_line(run)
        fields = _fields(record)
        assert int(fields["status"]) == reply.status == record.http_status, name  # type: ignore[attr-defined]
        statuses[name] = reply.status
        if name in UNAUTHENTICATED:  # no verified caller: nothing about one is claimed
            assert (fields["oid"], record.caller_oid, record.caller_client_app) == ("-", "-", "-")  # type: ignore[attr-defined]
        else:
            assert fields["oid"] == record.caller_oid == fake_entra.user_oid("alice"), name  # type: ignore[attr-defined]
    # The requests above really covered the outcomes: success, notification, refusals, transport errors.
    assert {200, 202, 400, 401, 403, 405, 415, 421} <= set(statuses.values()), statuses


@pytest.mark.parametrize("tool", ["read_files", "needs_mfa"])
def test_request_line_names_the_tool_that_raised_a_challenge(fake_entra: FakeEntra, tool: str) -> None:
    handler = handler_for(make_server(fake_entra, endpoint_tools))
    _, record = _one_line(lambda: legacy(fake_entra.mint(), "tools/call", {"name": tool, "arguments": {}},
                                         handler=handler))
    assert (_fields(record)["method"], _fields(record)["tool"]) == ("tools/call", tool)


def test_cold_start_503_is_logged_once(fake_entra: FakeEntra) -> None:
    with FakeEntra() as idp:
        idp.fail_mode = "503"
        server, _ = private_server(idp, fetcher=fast_fetcher())
        reply, record = _one_line(lambda: legacy(idp.mint(), "tools/list", handler=as_function(server)))
    assert reply.status == 503 and _fields(record)["status"] == "503"


def test_structured_attributes_carry_the_duration(fake_entra: FakeEntra) -> None:
    _, record = _one_line(lambda: legacy(fake_entra.mint(), "ping"))
    assert record.duration_ms >= 0  # type: ignore[attr-defined]


def test_request_line_is_one_physical_line(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint()
    forged = "x\nmcp request method=tools/call tool=whoami oid=victim client=x status=200 duration_ms=1.0"
    _, record = _one_line(lambda: legacy(token, "tools/call", {"name": forged, "arguments": {}}))
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    _, record = _one_line(lambda: legacy(token, "tools/call", {"name": "n" * 100_000, "arguments": {}}))
    assert len(record.getMessage()) < 2000


def test_request_line_does_not_echo_a_refused_host(fake_entra: FakeEntra) -> None:
    # A refused Host is attacker-controlled and unauthenticated; the request line carries only fixed fields.
    _, record = _one_line(lambda: request(body=rpc("ping"), host="evil.example"))
    assert "evil" not in record.getMessage()


def test_refused_host_is_named_in_a_sanitised_warning(fake_entra: FakeEntra) -> None:
    # An operator who forgot MCP_PUBLIC_BASE_URL sees why every request is a 421, without log injection.
    with capture_all_logs() as logs:
        reply = request(body=rpc("ping"), host="mcp.contoso.example\r\nforged: line")
    assert reply.status == 421
    warnings = [r.getMessage() for r in logs.records if r.name == "mcp.request" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MCP_PUBLIC_BASE_URL" in warnings[0], warnings
    assert "mcp.contoso.example" in warnings[0] and "\n" not in warnings[0] and "\r" not in warnings[0]


def test_a_500_after_authentication_still_names_the_caller(fake_entra: FakeEntra) -> None:
    def broken_downstream(token: str, **_: Any) -> Any:
        raise RuntimeError("downstream factory bug")

    server = make_server(fake_entra)
    server._downstream = broken_downstream
    with capture_all_logs() as logs:
        reply = legacy(fake_entra.mint(user="alice"), "ping", handler=as_function(server))
    assert reply.status == 500 and reply.json["error"]["code"] == -32603
    lines = request_log_lines(logs.records)
    assert len(lines) == 1 and _fields(lines[0])["oid"] == fake_entra.user_oid("alice")
    assert any(r.exc_info and "downstream factory bug" in str(r.exc_info[1]) for r in logs.records)


# -- attacker-chosen text never passes for a log field -------------------------------------------------------------

FORGED_FIELDS = "x status=200 oid=admin"


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda f: f.mint(key=foreign_private_key(), headers={"kid": FORGED_FIELDS}), 401),
        (lambda f: f.mint(headers={"alg": f"RS256 {FORGED_FIELDS}"}), 401),
        (lambda f: f.mint(headers={"alg": {"x": FORGED_FIELDS}}), 401),
        # Signed by the tenant, still text its client chose or could influence: encoded just the same.
        (lambda f: f.mint(claims={"ver": FORGED_FIELDS}), 401),
        (lambda f: f.mint(client_id=FORGED_FIELDS), 403),
        (lambda f: f.mint_app_only([FORGED_FIELDS]), 403),
    ],
    ids=["kid", "alg", "alg-object", "ver", "client", "app-roles"],
)
def test_token_text_cannot_forge_log_fields(fake_entra: FakeEntra, make: Callable[[FakeEntra], str],
                                           status: int) -> None:
    # With MCP_APP_ROLES set, so that the app-role refusal (which names the token's roles) is covered too.
    handler = handler_for(make_server(fake_entra, forker_tools, validator=TokenValidator.from_settings(
        load_settings({**settings_env(fake_entra), "MCP_APP_ROLES": "Tools.Execute.All"}))))
    with capture_all_logs() as logs:
        reply = legacy(make(fake_entra), "tools/list", handler=handler)
    assert reply.status == status
    [line] = request_log_lines(logs.records)
    assert _fields(line)["oid"] == "-" and _fields(line)["status"] == str(status)  # the real fields
    refusals = [r.getMessage() for r in logs.records if r.getMessage().startswith("Token refused")]
    assert len(refusals) == 1, refusals
    for record in logs.records:
        message = record.getMessage()
        if record is line:
            continue
        assert " oid=admin" not in message and " status=200" not in message, message
    assert "%20status%3D200" in refusals[0], refusals[0]  # still there for the operator, percent-encoded
