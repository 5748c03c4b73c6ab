"""Fuzzing the MCP endpoint with Hypothesis: bodies, headers, versions, HTTP methods, params, tokens.

Whatever arrives, the registered Functions handler must answer: never a 5xx, never an exception escaping the
function, and every answer well formed (``support.assert_well_formed``: a JSON-RPC message or batch, or an OAuth
error object, or an empty 202/204; a Bearer challenge on every 401; never a session id or a stack trace).
``test_endpoint.py`` already runs a small smoke fuzz of JSON-RPC bodies; this suite goes wider and runs at scale.

Example counts come from a settings profile chosen by the environment: with ``CI`` set (``.ci/run`` sets it) the
suite runs ``CI_EXAMPLES`` examples in total, derandomized so a CI failure reproduces; locally a smaller random
run. ``MCP_FUZZ_EXAMPLES=N`` overrides the total (e.g. for a long local soak).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import string
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fake_entra import FakeEntra
from support import (
    BASE,
    HOST,
    MCP_FUNCTION,
    MODERN,
    Handler,
    Reply,
    assert_well_formed,
    handler_for,
    meta,
    to_reply,
)
from test_endpoint import make_server
from test_endpoint import test_tools as endpoint_tools

CI_EXAMPLES = 3000
LOCAL_EXAMPLES = 300

# Share of the total per test: the cheap, high-yield JSON-RPC and header fuzzers get most.
WEIGHTS = {"messages": 0.30, "tool_calls": 0.20, "headers": 0.25, "raw_bodies": 0.15, "tokens": 0.10}

_ci = bool(os.environ.get("CI"))
TOTAL_EXAMPLES = int(os.environ.get("MCP_FUZZ_EXAMPLES") or (CI_EXAMPLES if _ci else LOCAL_EXAMPLES))
_common: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("mcp-fuzz-ci", derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("mcp-fuzz-local", **_common)
PROFILE = settings.get_profile("mcp-fuzz-ci" if _ci else "mcp-fuzz-local")


def fuzz_settings(name: str) -> settings:
    """This test's share of the run, on top of the environment's profile (not loaded globally: other suites keep
    their own explicit settings)."""
    return settings(PROFILE, max_examples=max(10, round(TOTAL_EXAMPLES * WEIGHTS[name])))


def examples_per_run() -> dict[str, int]:
    return {name: fuzz_settings(name).max_examples for name in WEIGHTS}


# -- the targets ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(fake_entra: FakeEntra) -> str:
    return fake_entra.mint(expires_in=3 * 3600)


@pytest.fixture(scope="module")
def targets(fake_entra: FakeEntra) -> list[Handler]:
    """The registered function (forker tools) and a server with the endpoint suite's test tools (one that raises,
    one that needs an extra scope, one with a claims challenge...)."""
    return [MCP_FUNCTION, handler_for(make_server(fake_entra, endpoint_tools))]


class _CatchUnhandled(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Unhandled error" in record.getMessage():
            self.hits.append(self.format(record))


_unhandled = _CatchUnhandled()


@pytest.fixture(scope="module", autouse=True)
def no_unhandled_errors() -> Iterator[None]:
    """Fails the module if the pipeline's last-resort handler ever ran (it turns an exception into a 500)."""
    catch = _unhandled
    catch.hits.clear()
    logger = logging.getLogger("mcp.request")
    logger.addHandler(catch)
    try:
        yield
    finally:
        logger.removeHandler(catch)
    assert not catch.hits, catch.hits[0]


def send(handler: Handler, *, method: str = "POST", headers: dict[str, str], body: bytes,
         params: dict[str, str] | None = None) -> Reply:
    req = func.HttpRequest(method=method, url=f"{BASE}/mcp", headers=headers, params=params or {}, body=body)
    return to_reply(handler(req))  # an exception here escapes the function: Hypothesis reports it


def base_headers(token: str) -> dict[str, str]:
    return {"Host": HOST, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}"}


# -- strategies -----------------------------------------------------------------------------------------------------

KNOWN_METHODS = ["initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/list",
                 "resources/templates/list", "resources/read", "prompts/list", "prompts/get", "completion/complete",
                 "logging/setLevel", "notifications/initialized", "notifications/cancelled",
                 "notifications/roots/list_changed", "sampling/createMessage", "elicitation/create"]
VERSIONS = [MODERN, "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2099-01-01", "", "latest", "2025-11-25 ",
            "2025-11-25, 2025-06-18"]
TOOL_NAMES = ["whoami", "get_my_profile", "echo", "explode", "refuse", "version", "read_files", "needs_mfa",
              "no_such_tool", "", "WHOAMI", "../whoami"]

scalars = (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False)
           | st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=20,
)
method_names = st.sampled_from(KNOWN_METHODS) | st.text(max_size=25)
meta_values = st.one_of(
    st.builds(lambda v, extra: {**meta(v), **extra}, st.sampled_from(VERSIONS),
              st.dictionaries(st.text(max_size=10), json_values, max_size=2)),
    st.dictionaries(st.sampled_from([*meta(), "progressToken", "io.modelcontextprotocol/related-task"]),
                    json_values, max_size=4),
    json_values,
)
params = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "_meta": meta_values, "name": st.sampled_from(TOOL_NAMES) | st.text(max_size=10), "arguments": json_values,
        "uri": st.text(max_size=30), "cursor": json_values, "protocolVersion": st.sampled_from(VERSIONS),
        "capabilities": json_values, "clientInfo": json_values, "ref": json_values, "argument": json_values,
        "level": st.sampled_from(["debug", "info", "emergency", "nope"]), "inputResponses": json_values,
        "requestState": json_values | st.text(max_size=60),
    }),
)
ids = st.integers(-(2**63), 2**63) | st.text(max_size=10) | st.none() | st.floats(allow_nan=False) | json_values
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2.0]), "method": method_names},
    optional={"id": ids, "params": params, "result": json_values, "error": json_values},
)
protocol_headers = st.fixed_dictionaries({}, optional={
    "MCP-Protocol-Version": st.sampled_from(VERSIONS),
    "Mcp-Method": method_names,
    "Mcp-Name": st.sampled_from(TOOL_NAMES) | st.text(max_size=20)
    | st.binary(max_size=20).map(lambda b: "=?base64?" + base64.b64encode(b).decode() + "?="),
    "Accept": st.sampled_from(["application/json", "text/event-stream", "application/json, text/event-stream",
                               "*/*", "", "text/html", "application/*;q=0.1"]),
    "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                     "text/plain", "application/json-patch+json", ""]),
    "Mcp-Session-Id": st.text(max_size=10),
    "Last-Event-ID": st.text(max_size=10),
})


def _modern_request(method: str, payload: dict[str, Any], name: str | None, version: str) -> tuple[dict, dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**payload, "_meta": meta(version)}}
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return body, headers


# -- the fuzzers ----------------------------------------------------------------------------------------------------


@fuzz_settings("messages")
@given(body=st.one_of(messages, st.lists(messages, max_size=4), json_values), headers=protocol_headers,
       http_method=st.sampled_from(["POST"] * 6 + ["GET", "DELETE", "OPTIONS"]))
def test_fuzzed_json_rpc(token: str, targets: list[Handler], body: Any, headers: dict[str, str],
                         http_method: str) -> None:
    raw = json.dumps(body).encode()
    for handler in targets:
        reply = send(handler, method=http_method, headers={**base_headers(token), **headers}, body=raw)
        assert_well_formed(reply)
        if http_method in ("GET", "DELETE"):
            assert reply.status == 405
        # A plain request with a usable id that was served is answered with that same id.
        if (reply.status == 200 and isinstance(body, dict) and isinstance(body.get("id"), int | str)
                and not isinstance(body.get("id"), bool) and isinstance(reply.json, dict)):
            assert reply.json["id"] == body["id"]


@fuzz_settings("tool_calls")
@given(name=st.sampled_from(TOOL_NAMES), arguments=json_values | st.fixed_dictionaries(
    {}, optional={"text": json_values | st.text(max_size=50), "times": json_values | st.integers(-5, 50),
                  "extra": json_values}),
       version=st.sampled_from([MODERN, "2025-11-25", "2025-06-18", "2025-03-26"]),
       header_name=st.none() | st.sampled_from(TOOL_NAMES))
def test_fuzzed_tool_calls(token: str, targets: list[Handler], name: str, arguments: Any, version: str,
                           header_name: str | None) -> None:
    payload = {"name": name, "arguments": arguments}
    if version == MODERN:
        body, headers = _modern_request("tools/call", payload, header_name if header_name is not None else name,
                                        version)
    else:
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": payload}
        headers = {"MCP-Protocol-Version": version}
    for handler in targets:
        reply = send(handler, headers={**base_headers(token), **headers}, body=json.dumps(body).encode())
        assert_well_formed(reply)
        if reply.status == 200:
            result = reply.json.get("result")
            if result is not None:  # a tool result: content list, isError only as a boolean
                assert isinstance(result.get("content", []), list)
                assert result.get("isError", False) in (True, False)


header_names = st.sampled_from(["Authorization", "Host", "Origin", "Content-Type", "Accept", "MCP-Protocol-Version",
                                "Mcp-Method", "Mcp-Name", "Content-Length", "Transfer-Encoding", "Cookie",
                                "X-Forwarded-Host", "X-Forwarded-Proto", "X-MS-CLIENT-PRINCIPAL",
                                "Access-Control-Request-Method"]) | st.text(string.ascii_letters + "-", min_size=1,
                                                                            max_size=20)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80) | st.sampled_from(
    ["Bearer", "Bearer ", "bearer x.y.z", "Basic Og==", "localhost:7071", "127.0.0.1", "[::1]", "evil.example",
     "http://localhost:6274", "null", "application/json", MODERN, "2025-03-26", "tools/call", "whoami"])


@fuzz_settings("headers")
@given(changes=st.dictionaries(header_names, header_values | st.none(), max_size=6), keep_token=st.booleans(),
       http_method=st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "OPTIONS"]),
       query=st.dictionaries(st.sampled_from(["access_token", "code", "x", "api-version"]), st.text(max_size=20),
                             max_size=2),
       body=st.sampled_from([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                             {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             {"jsonrpc": "2.0", "method": "notifications/initialized"}]))
def test_fuzzed_headers(token: str, targets: list[Handler], changes: dict[str, str | None], keep_token: bool,
                        http_method: str, query: dict[str, str], body: dict[str, Any]) -> None:
    headers: dict[str, str] = base_headers(token) if keep_token else {
        k: v for k, v in base_headers(token).items() if k != "Authorization"}
    for name, value in changes.items():
        # Header names are case-insensitive: a change replaces any spelling of the same header.
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
    for handler in targets:
        reply = send(handler, method=http_method, headers=headers, body=json.dumps(body).encode(), params=query)
        assert_well_formed(reply)
        if "access_token" in query and reply.status not in (403, 421, 204, 405):
            assert reply.status == 400  # a token in the query string is never used


@fuzz_settings("raw_bodies")
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.builds(lambda prefix, cut: prefix[:cut], st.sampled_from([
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]',
    ]), st.integers(0, 90)),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 5000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.sampled_from([b"NaN", b"Infinity", b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}', b"\xef\xbb\xbf{}",
                     b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}', b"\x00", b"null",
                     '{"jsonrpc":"2.0","id":"\ud800","method":"ping"}'.encode("utf-8", "surrogatepass")]),
), version=st.sampled_from(["2025-03-26", "2025-11-25", MODERN]))
def test_fuzzed_raw_bodies(token: str, targets: list[Handler], raw: bytes, version: str) -> None:
    for handler in targets:
        reply = send(handler, headers={**base_headers(token), "MCP-Protocol-Version": version}, body=raw)
        assert_well_formed(reply)


# Found by this fuzzer: a lone surrogate echoed back (id, method, tool name) has no UTF-8 form.
@pytest.mark.parametrize("raw", [
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\udfff","arguments":{}}}',
    '{"jsonrpc":"2.0","id":"\ud800","method":"ping"}'.encode("utf-8", "surrogatepass"),  # raw, invalid UTF-8
], ids=["escaped-in-id", "escaped-in-method", "escaped-in-tool-name", "raw-bytes-in-id"])
def test_lone_surrogates_are_not_a_500(token: str, raw: bytes) -> None:
    reply = send(MCP_FUNCTION, headers=base_headers(token), body=raw)
    assert reply.status < 500, reply.body
    assert_well_formed(reply)


# A mutated token must never be accepted, unless the mutation left the signed bytes and the decoded signature
# unchanged (base64url's last character can carry unused bits: such a "mutation" is the same token).
@fuzz_settings("tokens")
@given(data=st.data())
def test_fuzzed_token_mutations(token: str, targets: list[Handler], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "swap-segments", "append"]))
    chars = string.ascii_letters + string.digits + "-_.+/="
    position = data.draw(st.integers(0, len(token) - 1))
    if kind == "replace":
        char = data.draw(st.sampled_from(chars))
        assume(char != token[position])
        mutated = token[:position] + char + token[position + 1:]
    elif kind == "insert":
        mutated = token[:position] + data.draw(st.sampled_from(chars)) + token[position:]
    elif kind == "delete":
        mutated = token[:position] + token[position + 1:]
    elif kind == "swap-segments":
        header, payload, signature = token.split(".")
        mutated = ".".join(data.draw(st.permutations([header, payload, signature])))
        assume(mutated != token)
    else:
        mutated = token + data.draw(st.text(chars, min_size=1, max_size=8))
    reply = send(targets[0], headers={**base_headers(token), "Authorization": f"Bearer {mutated}",
                                      "MCP-Protocol-Version": "2025-11-25"},
                 body=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert_well_formed(reply)
    if reply.status == 200:
        assert _same_signed_token(token, mutated), mutated
    else:
        assert reply.status in (400, 401), reply.status


def _same_signed_token(original: str, other: str) -> bool:
    head, _, signature = original.rpartition(".")
    other_head, _, other_signature = other.rpartition(".")

    def decode(segment: str) -> bytes | None:
        try:
            return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except ValueError:
            return None

    return head == other_head and decode(signature) == decode(other_signature)


def test_profile_matches_the_promise() -> None:
    """CI runs thousands of examples per run; the count is printed for the closing note."""
    counts = examples_per_run()
    print(f"\nfuzz examples per run ({'CI' if _ci else 'local'} profile): {sum(counts.values())} {counts}")
    if _ci and not os.environ.get("MCP_FUZZ_EXAMPLES"):
        assert sum(counts.values()) >= CI_EXAMPLES
        assert PROFILE.derandomize
