"""Second hardening pass (issue 10, items 1-4), each test written to fail before its fix:

1. routing headers (``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``) are held to the body in every protocol
   version, not only 2026-07-28; integer ``Mcp-Param-*`` values must be canonical decimal text;
2. ``Param(pattern=...)`` is checked with the JSON Schema (ECMA-262) meaning the schema advertises, and only
   with a ``max_length`` that bounds what the pattern is run on;
3. ``requestState`` binds the round to the arguments and to the input-request keys it issued;
   ``inputResponses`` without a valid state, or for keys that were never issued, never reach the function;
4. a resource-template variable is never a dot segment (``.``, ``..``, in any percent-encoding).

Exercised on the engine directly (plain values in and out), like ``test_protocol_features``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest

from callers import ALICE
from shared.features.mrtr import InputRequired, accepted, elicit_form
from shared.features.prompts import PromptRegistry
from shared.features.resources import ResourceNotFound, ResourceRegistry
from shared.features.schema import Param, schema_for, validate
from shared.features.tools import ToolContext, ToolRegistry
from shared.protocol.engine import McpEngine
from shared.protocol.request_state import InvalidRequestState, RequestStateCodec

MODERN = "2026-07-28"
LEGACY = ["2025-11-25", "2025-06-18", "2025-03-26", None]  # None: no MCP-Protocol-Version header at all

# What each tool call saw, so a test can tell "refused" from "ran with something else".
SEEN: list[tuple[str, dict[str, Any], Any]] = []


def build() -> McpEngine:
    tools, resources, prompts = ToolRegistry(), ResourceRegistry(), PromptRegistry()

    @tools.tool
    def safe_tool() -> str:
        """Harmless."""
        return "safe"

    @tools.tool
    def delete_everything() -> str:
        """Dangerous."""
        return "deleted"

    @tools.tool
    def run_query(
        region: Annotated[str, Param(header="Region")],
        query: str,
        shard: Annotated[int | None, Param(header="Shard")] = None,
        dry_run: Annotated[bool | None, Param(header="DryRun")] = None,
    ) -> str:
        """Run a query in a region."""
        return f"{query} in {region} on shard {shard} dry {dry_run}"

    @tools.tool
    def transfer(amount: int, to: str, ctx: ToolContext) -> str:
        """Move money, after the user confirms."""
        SEEN.append(("transfer", dict(ctx.input_responses), ctx.state))
        answer = ctx.input_responses.get("confirm")
        if not accepted(answer):
            raise InputRequired({"confirm": elicit_form(f"Transfer {amount} to {to}?", {
                "type": "object", "properties": {"ok": {"type": "boolean"}}})}, state={"amount": amount})
        return f"transferred {amount} to {to}"

    @tools.tool
    def two_steps(ctx: ToolContext) -> str:
        """Asks for a retry with state only, then for a confirmation."""
        SEEN.append(("two_steps", dict(ctx.input_responses), ctx.state))
        if ctx.state is None:
            raise InputRequired(state={"step": 1})
        if "confirm" not in ctx.input_responses:
            raise InputRequired({"confirm": elicit_form("Sure?", {"type": "object", "properties": {}})},
                                state={"step": 2})
        return "done"

    @resources.template("files://{name}", mime_type="text/plain")
    def read_file(name: str) -> str:
        """A file by name."""
        return f"contents of {name}"

    @resources.template("docs://{section}/{page}")
    def doc(section: str, page: str) -> str:
        """A page of a section."""
        return f"{section}/{page}"

    @prompts.prompt
    def approve(item: str, ctx: ToolContext) -> str:
        """Ask for approval of an item."""
        SEEN.append(("approve", dict(ctx.input_responses), ctx.state))
        if not accepted(ctx.input_responses.get("ok")):
            raise InputRequired({"ok": elicit_form(f"Approve {item}?", {"type": "object", "properties": {}})})
        return f"approved {item}"

    return McpEngine(tools, server_name="t", server_version="1", resources=resources, prompts=prompts,
                     request_state=RequestStateCodec(b"k" * 32))


def call(engine: McpEngine, method: str, params: dict[str, Any] | None = None, *, version: str | None = MODERN,
         headers: dict[str, str | None] | None = None, capabilities: dict[str, Any] | None = None,
         body: Any = None) -> tuple[int, dict[str, Any]]:
    """One request; 2026-07-28 requests get the mirrored headers a conforming client sends, which
    ``headers`` may then change (None removes one)."""
    params = dict(params or {})
    h: dict[str, str | None] = {"Content-Type": "application/json"}
    if version is not None:
        h["MCP-Protocol-Version"] = version
    if version == MODERN:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                           "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
        h["Mcp-Method"] = method
        target = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
        if target is not None:
            h["Mcp-Name"] = params.get(target)
    h.update(headers or {})
    message = body if body is not None else {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    response = engine.handle("POST", {k: v for k, v in h.items() if v is not None}, json.dumps(message).encode(),
                             caller=ALICE)
    return response.status, (response.json if response.body else {})


def assert_mismatch(answer: tuple[int, dict[str, Any]]) -> None:
    status, payload = answer
    assert status == 400, payload
    assert payload["error"]["code"] == -32020, payload


def text_of(answer: tuple[int, dict[str, Any]]) -> str:
    status, payload = answer
    assert status == 200, payload
    return str(payload["result"]["content"][0]["text"])


# =====================================================================================================
# 1. Routing headers are held to the body whatever the protocol version
# =====================================================================================================


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_mcp_name_naming_another_tool_is_refused(version: str | None) -> None:
    engine = build()
    params = {"name": "delete_everything", "arguments": {}}
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={"Mcp-Name": "safe_tool"}))
    # The same for the other named targets: a prompt's name and a resource's URI.
    assert_mismatch(call(engine, "prompts/get", {"name": "approve", "arguments": {"item": "x"}}, version=version,
                         headers={"Mcp-Name": "other"}))
    assert_mismatch(call(engine, "resources/read", {"uri": "files://a"}, version=version,
                         headers={"Mcp-Name": "files://b"}))
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={"Mcp-Name": "=?base64?!!?="}))


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_mcp_method_disagreeing_with_the_body_is_refused(version: str | None) -> None:
    engine = build()
    params = {"name": "delete_everything", "arguments": {}}
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={"Mcp-Method": "tools/list"}))
    assert_mismatch(call(engine, "tools/list", version=version, headers={"Mcp-Method": "TOOLS/LIST"}))
    # A notification is held to its header too (no id: the error still carries the code).
    status, payload = call(engine, "notifications/initialized", version=version,
                           headers={"Mcp-Method": "tools/call"},
                           body={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (status, payload["error"]["code"]) == (400, -32020)


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_routing_headers_that_agree_with_the_body_are_served(version: str | None) -> None:
    engine = build()
    headers: dict[str, str | None] = {"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?c2FmZV90b29s?="}
    assert text_of(call(engine, "tools/call", {"name": "safe_tool", "arguments": {}}, version=version,
                        headers=headers)) == "safe"
    # Mcp-Name is only compared where the method names a target; legacy clients need send none of them.
    assert call(engine, "tools/list", version=version, headers={"Mcp-Method": "tools/list"})[0] == 200
    assert text_of(call(engine, "tools/call", {"name": "safe_tool"}, version=version)) == "safe"


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_param_headers_are_checked_when_present(version: str | None) -> None:
    engine = build()
    params = {"name": "run_query", "arguments": {"region": "eu-west", "query": "q", "shard": 7}}
    # Legacy clients do not mirror parameters: no header, no check.
    assert text_of(call(engine, "tools/call", params, version=version)) == "q in eu-west on shard 7 dry None"
    assert text_of(call(engine, "tools/call", params, version=version,
                        headers={"Mcp-Param-Region": "eu-west", "Mcp-Param-Shard": "7"})).startswith("q in eu-west")
    # But a header a gateway may have routed on must be what the body says.
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={"Mcp-Param-Region": "us-east"}))
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={"Mcp-Param-Shard": "8"}))
    assert_mismatch(call(engine, "tools/call", params, version=version,
                         headers={"Mcp-Param-Region": "=?base64?not base64?="}))


@pytest.mark.parametrize("version", [MODERN, *LEGACY])
def test_a_param_header_for_an_argument_the_body_omits_is_a_mismatch(version: str | None) -> None:
    engine = build()
    region = {"Mcp-Param-Region": "eu"} if version == MODERN else {}
    omitted = {"name": "run_query", "arguments": {"region": "eu", "query": "q"}}
    assert_mismatch(call(engine, "tools/call", omitted, version=version, headers={**region, "Mcp-Param-Shard": "7"}))
    nulled = {"name": "run_query", "arguments": {"region": "eu", "query": "q", "shard": None}}
    assert_mismatch(call(engine, "tools/call", nulled, version=version, headers={**region, "Mcp-Param-Shard": "7"}))
    # A header no parameter of the tool declares describes nothing in the body either.
    assert_mismatch(call(engine, "tools/call", omitted, version=version, headers={**region, "Mcp-Param-Tenant": "x"}))
    assert_mismatch(call(engine, "tools/call", {"name": "safe_tool", "arguments": {}}, version=version,
                         headers={"Mcp-Param-Region": "eu"}))
    # And one on a method that has no parameters to mirror.
    assert_mismatch(call(engine, "tools/list", version=version, headers={"Mcp-Param-Region": "eu"}))


@pytest.mark.parametrize("version", [MODERN, "2025-11-25"])
@pytest.mark.parametrize("header", ["+10", "1e1", "0010", "10.0", "\uff11\uff10", "1_0", "0x0a", "", "ten"])
def test_integer_param_headers_must_be_canonical_decimal(version: str, header: str) -> None:
    engine = build()
    params = {"name": "run_query", "arguments": {"region": "eu", "query": "q", "shard": 10}}
    region = {"Mcp-Param-Region": "eu"} if version == MODERN else {}
    assert_mismatch(call(engine, "tools/call", params, version=version, headers={**region, "Mcp-Param-Shard": header}))


@pytest.mark.parametrize("version", [MODERN, "2025-11-25"])
def test_canonical_integer_and_boolean_param_headers_match(version: str) -> None:
    engine = build()
    region = {"Mcp-Param-Region": "eu"} if version == MODERN else {}
    for shard, header in ((10, "10"), (0, "0"), (-3, "-3"), (10.0, "10"), (2**53 - 1, str(2**53 - 1))):
        params = {"name": "run_query", "arguments": {"region": "eu", "query": "q", "shard": shard}}
        answer = call(engine, "tools/call", params, version=version, headers={**region, "Mcp-Param-Shard": header})
        assert answer[0] == 200, (shard, header, answer)
    assert_mismatch(call(engine, "tools/call", {"name": "run_query", "arguments": {
        "region": "eu", "query": "q", "shard": 0}}, version=version, headers={**region, "Mcp-Param-Shard": "-0"}))
    params = {"name": "run_query", "arguments": {"region": "eu", "query": "q", "dry_run": False}}
    headers = {**region, "Mcp-Param-DryRun": "false"}
    assert call(engine, "tools/call", params, version=version, headers=headers)[0] == 200
    for header in ("False", "0", "no", "true"):
        assert_mismatch(call(engine, "tools/call", params, version=version,
                             headers={**region, "Mcp-Param-DryRun": header}))


def test_a_batch_with_routing_headers_is_refused_whole() -> None:
    engine = build()
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete_everything"}},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    for headers in ({"Mcp-Method": "tools/list"}, {"Mcp-Name": "safe_tool"}, {"Mcp-Param-Region": "eu"}):
        status, payload = call(engine, "", version="2025-03-26", headers=headers, body=batch)
        assert (status, payload["error"]["code"]) == (400, -32020), payload
    status, payload = call(engine, "", version="2025-03-26", body=batch)
    assert status == 200 and len(payload) == 2


# =====================================================================================================
# 2. Param(pattern=...) means what the JSON Schema says (ECMA-262), on bounded input
# =====================================================================================================


def _pattern(pattern: str, max_length: int = 100) -> dict[str, Any]:
    return schema_for(Annotated[str, Param(pattern=pattern, max_length=max_length)])


def test_dollar_is_the_end_of_the_string_not_before_a_final_newline() -> None:
    schema = _pattern("^[a-z0-9-]+$")
    assert validate("ok", schema) == []
    assert validate("ok\n", schema) != []
    assert validate("ok\n", _pattern("^(?:ok$|x)")) != []
    # A `$` that is escaped or inside a class is a character, as in ECMA-262.
    assert validate("a$", _pattern(r"^a\$$")) == []
    assert validate("$", _pattern("^[$]$")) == []


def test_classes_are_ascii_as_in_ecma_262() -> None:
    assert validate("123", _pattern(r"^\d+$")) == []
    for digits in ("\u0661\u0662\u0663", "\uff11\uff12", "\u0967"):  # Arabic-Indic, full-width, Devanagari
        assert validate(digits, _pattern(r"^\d+$")) != [], digits
        assert validate(digits, _pattern(r"^[\d]+$")) != [], digits
    assert validate("abc_1", _pattern(r"^\w+$")) == []
    assert validate("caf\u00e9", _pattern(r"^\w+$")) != []
    assert validate("\u00e9", _pattern(r"^\W$")) == []
    assert validate("caf\u00e9", _pattern(r"\bcaf\b")) == []  # é is not a word character, so a boundary follows


def test_dot_and_whitespace_follow_ecma_262() -> None:
    for terminator in ("\n", "\r", "\u2028", "\u2029"):
        assert validate(f"a{terminator}b", _pattern("^a.b$")) != [], repr(terminator)
    assert validate("a\u00e9b", _pattern("^a.b$")) == []
    # ECMA-262 \s is its WhiteSpace and LineTerminator set: NBSP and BOM yes, the \x1c-\x1f separators no.
    for space in (" ", "\t", "\u00a0", "\ufeff", "\u3000", "\u2028"):
        assert validate(space, _pattern(r"^\s$")) == [], repr(space)
        assert validate(space, _pattern(r"^[\s]$")) == [], repr(space)
        assert validate(space, _pattern(r"^\S$")) != [], repr(space)
    for other in ("\x1c", "\x85", "a"):
        assert validate(other, _pattern(r"^\s$")) != [], repr(other)
        assert validate(other, _pattern(r"^[^\s]$")) == [], repr(other)


def test_a_pattern_needs_a_max_length() -> None:
    with pytest.raises(TypeError, match="max_length"):
        Param(pattern="^[a-z]+$")
    assert Param(pattern="^[a-z]+$", max_length=64).pattern == "^[a-z]+$"


@pytest.mark.parametrize("pattern", [r"\Aabc\Z", "(?i)abc", "(?P<x>a)", "(?#note)a", "a*+", "(?>a)", "[]a]",
                                     "(?s:.)"])
def test_python_only_regex_syntax_is_refused_at_registration(pattern: str) -> None:
    with pytest.raises(TypeError, match="JSON Schema"):
        Param(pattern=pattern, max_length=10)


# =====================================================================================================
# 3. requestState binds the arguments and the keys it asked for; unasked answers never reach the function
# =====================================================================================================

FORM_CLIENT = {"elicitation": {}}
YES = {"action": "accept", "content": {"ok": True}}


def _ask(engine: McpEngine, arguments: dict[str, Any]) -> dict[str, Any]:
    status, payload = call(engine, "tools/call", {"name": "transfer", "arguments": arguments},
                           capabilities=FORM_CLIENT)
    assert status == 200 and payload["result"]["resultType"] == "input_required", payload
    return dict(payload["result"])


def test_a_confirmation_cannot_be_replayed_with_other_arguments() -> None:
    engine = build()
    asked = _ask(engine, {"amount": 10, "to": "bob"})
    retry = {"name": "transfer", "inputResponses": {"confirm": YES}, "requestState": asked["requestState"]}
    assert text_of(call(engine, "tools/call", {**retry, "arguments": {"amount": 10, "to": "bob"}},
                        capabilities=FORM_CLIENT)) == "transferred 10 to bob"
    # Key order and spacing do not matter (canonical JSON); the values do.
    assert text_of(call(engine, "tools/call", {**retry, "arguments": {"to": "bob", "amount": 10}},
                        capabilities=FORM_CLIENT)) == "transferred 10 to bob"
    SEEN.clear()
    for arguments in ({"amount": 10_000, "to": "bob"}, {"amount": 10, "to": "mallory"}, {"amount": 10}, {}):
        status, payload = call(engine, "tools/call", {**retry, "arguments": arguments}, capabilities=FORM_CLIENT)
        assert (status, payload["error"]["code"]) == (200, -32602), (arguments, payload)
    assert SEEN == [], "a confirmation given for other arguments reached the tool"


def test_input_responses_without_request_state_never_reach_the_function() -> None:
    engine = build()
    SEEN.clear()
    status, payload = call(engine, "tools/call", {"name": "transfer", "arguments": {"amount": 10_000, "to": "x"},
                                                  "inputResponses": {"confirm": YES}}, capabilities=FORM_CLIENT)
    assert status == 200 and payload["result"]["resultType"] == "input_required", payload
    assert SEEN == [("transfer", {}, None)]
    # Malformed ones are still a protocol error, state or not.
    status, payload = call(engine, "tools/call", {"name": "transfer", "arguments": {"amount": 1, "to": "x"},
                                                  "inputResponses": {"confirm": 5}}, capabilities=FORM_CLIENT)
    assert payload["error"]["code"] == -32602


def test_responses_for_keys_that_were_not_asked_for_are_dropped() -> None:
    engine = build()
    asked = _ask(engine, {"amount": 10, "to": "bob"})
    SEEN.clear()
    retry = {"name": "transfer", "arguments": {"amount": 10, "to": "bob"}, "requestState": asked["requestState"],
             "inputResponses": {"confirm": YES, "admin_override": YES}}
    assert text_of(call(engine, "tools/call", retry, capabilities=FORM_CLIENT)) == "transferred 10 to bob"
    assert SEEN == [("transfer", {"confirm": YES}, {"amount": 10})]


def test_a_state_only_round_accepts_no_answers_and_the_next_round_its_own() -> None:
    engine = build()
    SEEN.clear()
    _, first = call(engine, "tools/call", {"name": "two_steps", "arguments": {}}, capabilities=FORM_CLIENT)
    state1 = first["result"]["requestState"]
    assert "inputRequests" not in first["result"]
    # Answering a question that the state-only round never asked does not count.
    _, second = call(engine, "tools/call", {"name": "two_steps", "arguments": {}, "requestState": state1,
                                            "inputResponses": {"confirm": YES}}, capabilities=FORM_CLIENT)
    assert second["result"]["resultType"] == "input_required"
    assert second["result"]["inputRequests"].keys() == {"confirm"}
    _, third = call(engine, "tools/call", {"name": "two_steps", "arguments": {},
                                           "requestState": second["result"]["requestState"],
                                           "inputResponses": {"confirm": YES}}, capabilities=FORM_CLIENT)
    assert third["result"]["content"][0]["text"] == "done"
    assert SEEN == [("two_steps", {}, None), ("two_steps", {}, {"step": 1}), ("two_steps", {"confirm": YES},
                                                                              {"step": 2})]


def test_prompt_state_is_bound_to_the_prompt_arguments() -> None:
    engine = build()
    _, asked = call(engine, "prompts/get", {"name": "approve", "arguments": {"item": "lunch"}},
                    capabilities=FORM_CLIENT)
    retry = {"name": "approve", "inputResponses": {"ok": YES}, "requestState": asked["result"]["requestState"]}
    _, done = call(engine, "prompts/get", {**retry, "arguments": {"item": "lunch"}}, capabilities=FORM_CLIENT)
    assert done["result"]["messages"][0]["content"]["text"] == "approved lunch"
    _, replayed = call(engine, "prompts/get", {**retry, "arguments": {"item": "a yacht"}}, capabilities=FORM_CLIENT)
    assert replayed["error"]["code"] == -32602


def test_the_codec_seals_the_argument_digest_and_the_issued_keys() -> None:
    codec = RequestStateCodec(b"s" * 32)
    token = codec.seal({"x": 1}, binding="tools/call:a", subject="t/u", arguments={"b": [1, 2], "a": "é"},
                       keys=["confirm", "amount"])
    opened = codec.open(token, binding="tools/call:a", subject="t/u", arguments={"a": "é", "b": [1, 2]})
    assert opened.data == {"x": 1} and opened.keys == frozenset({"confirm", "amount"})
    with pytest.raises(InvalidRequestState, match="arguments"):
        codec.open(token, binding="tools/call:a", subject="t/u", arguments={"a": "é", "b": [2, 1]})
    # The state carries a digest of the arguments, never the arguments themselves (signed, not encrypted).
    secret = codec.seal(None, binding="x", subject="s", arguments={"password": "hunter2"})
    import base64

    payload = base64.urlsafe_b64decode(secret.split(".")[2] + "==")
    assert b"hunter2" not in payload and b"password" not in payload


# =====================================================================================================
# 4. A template variable is never a dot segment
# =====================================================================================================


@pytest.mark.parametrize("uri", ["files://..", "files://.", "files://%2e%2e", "files://%2E%2E", "files://.%2e",
                                 "files://%2e", "docs://../x", "docs://a/..", "docs://%2e%2e/%2e%2e"])
def test_a_dot_segment_variable_is_not_found(uri: str) -> None:
    engine = build()
    with pytest.raises(ResourceNotFound):
        engine.resources.resolve(uri)
    for version, code in ((MODERN, -32602), ("2025-11-25", -32002)):
        _, payload = call(engine, "resources/read", {"uri": uri}, version=version)
        assert payload["error"]["code"] == code, (uri, version, payload)
        assert payload["error"]["data"] == {"uri": uri}


@pytest.mark.parametrize("name", ["...", ".hidden", "a..b", "%2e%2e%2e", "x."])
def test_names_with_dots_that_are_not_dot_segments_resolve(name: str) -> None:
    engine = build()
    _, variables = engine.resources.resolve(f"files://{name}")
    assert variables["name"] not in (".", "..")
    assert text_of_read(call(engine, "resources/read", {"uri": f"files://{name}"})).startswith("contents of ")


def text_of_read(answer: tuple[int, dict[str, Any]]) -> str:
    status, payload = answer
    assert status == 200, payload
    return str(payload["result"]["contents"][0]["text"])
