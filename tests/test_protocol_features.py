"""The protocol engine beyond tools: resources, prompts, completion, pagination, logging/setLevel, multi-round-trip
requests (MRTR) with signed requestState, and Mcp-Param-* header mirroring, exercised on the engine directly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callers import ALICE, BOB
from shared.features.completions import CompletionRegistry
from shared.features.mrtr import InputRequired, accepted, elicit_form, sample
from shared.features.prompts import PromptRegistry, UnknownPromptError
from shared.features.resources import ResourceRegistry
from shared.features.tools import RequestInfo, ToolContext, ToolRegistry, UrlElicitationRequired
from shared.protocol.engine import McpEngine
from shared.protocol.request_state import InvalidRequestState, RequestStateCodec, StaleRequestState
from shared.settings import decode_key

MODERN = "2026-07-28"




def build(page_size: int = 100, key: bytes = b"k" * 32) -> McpEngine:
    tools, resources, prompts, completions = ToolRegistry(), ResourceRegistry(), PromptRegistry(), CompletionRegistry()

    @tools.tool
    def greet(ctx: ToolContext) -> str:
        """Greet the user by name."""
        answer = ctx.input_responses.get("name")
        if not accepted(answer):
            form = elicit_form("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
            raise InputRequired({"name": form}, state={"step": 1})
        return f"Hello {answer['content']['name']} (state {ctx.state})"

    @tools.tool
    def needs_sampling() -> str:
        """Ask the client's model."""
        raise InputRequired({"s": sample("hi", max_tokens=5)})

    @tools.tool
    def consent() -> str:
        """Needs a URL visit."""
        raise UrlElicitationRequired("https://example.test/consent", "Consent needed.")

    @resources.resource("test://a", mime_type="text/plain")
    def a() -> str:
        """Resource A."""
        return "A"

    @resources.resource("test://b")
    def b() -> bytes:
        """Resource B."""
        return b"\x00\x01"

    @resources.template("test://items/{item}/data", mime_type="application/json")
    def item(item: str) -> str:
        """One item."""
        return json.dumps({"item": item})

    @prompts.prompt(title="Review")
    def review(code: str, language: str = "python") -> str:
        """Review code.

        Args:
            code: The code.
            language: Its language.
        """
        return f"Review this {language}: {code}"

    @completions.prompt_argument("review", "language")
    def languages(value: str, context: dict[str, str]) -> list[str]:
        return [x for x in ("python", "perl", "go") if x.startswith(value)]

    return McpEngine(tools, server_name="t", server_version="1", resources=resources, prompts=prompts,
                     completions=completions, request_state=RequestStateCodec(key), page_size=page_size)


def rpc(engine: McpEngine, method: str, params: dict[str, Any] | None = None, *, version: str = MODERN,
        caller: Any = ALICE, capabilities: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
        meta: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    params = dict(params or {})
    h = {"Content-Type": "application/json", "MCP-Protocol-Version": version}
    if version == MODERN:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version,
                           "io.modelcontextprotocol/clientCapabilities": capabilities or {}, **(meta or {})}
        h["Mcp-Method"] = method
        target = params.get("name") or params.get("uri")
        if method in ("tools/call", "prompts/get", "resources/read"):
            h["Mcp-Name"] = target
    h.update(headers or {})
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    response = engine.handle("POST", h, body, caller=caller)
    return response.status, response.json


@pytest.mark.parametrize("version", [MODERN, "2025-11-25"])
def test_resources_list_read_and_templates(version: str) -> None:
    engine = build()
    _, listed = rpc(engine, "resources/list", version=version)
    assert [r["uri"] for r in listed["result"]["resources"]] == ["test://a", "test://b"]
    _, templates = rpc(engine, "resources/templates/list", version=version)
    assert templates["result"]["resourceTemplates"][0]["uriTemplate"] == "test://items/{item}/data"
    _, text = rpc(engine, "resources/read", {"uri": "test://a"}, version=version)
    assert text["result"]["contents"] == [{"uri": "test://a", "mimeType": "text/plain", "text": "A"}]
    _, blob = rpc(engine, "resources/read", {"uri": "test://b"}, version=version)
    assert blob["result"]["contents"][0]["blob"] == "AAE="
    _, templated = rpc(engine, "resources/read", {"uri": "test://items/x%20y/data"}, version=version)
    assert json.loads(templated["result"]["contents"][0]["text"]) == {"item": "x y"}
    if version == MODERN:
        assert text["result"]["resultType"] == "complete"
        assert text["result"]["cacheScope"] == "private" and text["result"]["ttlMs"] > 0
    else:
        assert "resultType" not in text["result"]


@pytest.mark.parametrize(("version", "code"), [(MODERN, -32602), ("2025-11-25", -32002)])
def test_unknown_resource(version: str, code: int) -> None:
    _, answer = rpc(build(), "resources/read", {"uri": "test://nope"}, version=version)
    assert answer["error"]["code"] == code
    assert answer["error"]["data"] == {"uri": "test://nope"}


def test_pagination_with_opaque_cursors_and_bad_cursor() -> None:
    engine = build(page_size=1)
    _, first = rpc(engine, "resources/list")
    cursor = first["result"]["nextCursor"]
    _, second = rpc(engine, "resources/list", {"cursor": cursor})
    assert [r["uri"] for r in second["result"]["resources"]] == ["test://b"]
    assert "nextCursor" not in second["result"]
    for bad in ("garbage", cursor + "x", 5):
        _, answer = rpc(engine, "resources/list", {"cursor": bad})
        assert answer["error"]["code"] == -32602
    # A cursor of one list is not valid for another.
    _, answer = rpc(engine, "tools/list", {"cursor": cursor})
    assert answer["error"]["code"] == -32602


def test_prompts_list_get_and_argument_errors() -> None:
    engine = build()
    _, listed = rpc(engine, "prompts/list")
    assert listed["result"]["prompts"] == [{
        "name": "review", "title": "Review", "description": "Review code.",
        "arguments": [{"name": "code", "description": "The code.", "required": True},
                      {"name": "language", "description": "Its language.", "required": False}],
    }]
    _, got = rpc(engine, "prompts/get", {"name": "review", "arguments": {"code": "x=1"}})
    text = {"type": "text", "text": "Review this python: x=1"}
    assert got["result"]["messages"] == [{"role": "user", "content": text}]
    _, missing = rpc(engine, "prompts/get", {"name": "review", "arguments": {}})
    assert missing["error"]["code"] == -32602 and "code" in missing["error"]["message"]
    _, unknown = rpc(engine, "prompts/get", {"name": "nope"})
    assert unknown["error"]["code"] == -32602 and unknown["error"]["message"] == "Unknown prompt: nope"


def test_prompt_registry_get_render_and_the_plain_function() -> None:
    prompts = PromptRegistry()

    @prompts.prompt(title="Hi")
    def hello(who: str) -> str:
        """Say hello."""
        return f"Hello, {who}!"

    @prompts.prompt
    async def bye() -> str:
        """Say goodbye."""
        return "Bye!"

    assert hello(who="Ada") == "Hello, Ada!"  # the decorator returns the function unchanged
    found = prompts.get("hello")
    assert found is not None and found.func is hello and found.definition["title"] == "Hi"
    assert prompts.get("nope") is None
    ctx = ToolContext(caller=ALICE, request=RequestInfo(MODERN))
    assert prompts.render("hello", {"who": "Ada"}, ctx) == {
        "messages": [{"role": "user", "content": {"type": "text", "text": "Hello, Ada!"}}],
        "description": "Say hello.",
    }
    assert prompts.render("bye", None, ctx)["messages"][0]["content"]["text"] == "Bye!"
    with pytest.raises(UnknownPromptError):
        prompts.render("nope", {}, ctx)
    with pytest.raises(ValueError, match="Invalid prompt name"):
        prompts.prompt(name="has space")(hello)


def test_async_completer() -> None:
    completions = CompletionRegistry()

    @completions.prompt_argument("review", "language")
    async def languages(value: str, context: Any) -> list[str]:
        return [lang for lang in ("python", "perl", "go") if lang.startswith(value)]

    assert completions.complete("ref/prompt", "review", "language", "p", {}) == {
        "values": ["python", "perl"], "total": 2, "hasMore": False}
    # A tuple (an iterable that is not awaitable) is taken as it is.
    completions.prompt_argument("review", "code")(lambda value, context: ("a", "b"))
    assert completions.complete("ref/prompt", "review", "code", "", {})["values"] == ["a", "b"]


def test_completion() -> None:
    engine = build()
    ref = {"type": "ref/prompt", "name": "review"}
    _, answer = rpc(engine, "completion/complete", {"ref": ref, "argument": {"name": "language", "value": "p"}})
    assert answer["result"]["completion"] == {"values": ["python", "perl"], "total": 2, "hasMore": False}
    _, none = rpc(engine, "completion/complete", {"ref": ref, "argument": {"name": "code", "value": ""}})
    assert none["result"]["completion"]["values"] == []
    _, bad = rpc(engine, "completion/complete",
                 {"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "a", "value": ""}})
    assert bad["error"]["code"] == -32602


def test_capabilities_and_logging() -> None:
    engine = build()
    _, init = rpc(engine, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                         "clientInfo": {"name": "c", "version": "1"}}, version="2025-11-25")
    caps = init["result"]["capabilities"]
    assert {"tools", "resources", "prompts", "completions", "logging"} <= set(caps)
    _, discover = rpc(engine, "server/discover")
    assert "logging" not in discover["result"]["capabilities"]  # no notifications/message is ever sent
    assert rpc(engine, "logging/setLevel", {"level": "info"}, version="2025-11-25")[1]["result"] == {}
    assert rpc(engine, "logging/setLevel", {"level": "loud"}, version="2025-11-25")[1]["error"]["code"] == -32602
    status, answer = rpc(engine, "logging/setLevel", {"level": "info"})
    assert (status, answer["error"]["code"]) == (404, -32601)
    status, answer = rpc(engine, "tools/list", meta={"io.modelcontextprotocol/logLevel": "loud"})
    assert (status, answer["error"]["code"]) == (400, -32602)


def test_mrtr_round_trip_with_signed_state() -> None:
    engine = build()
    caps = {"elicitation": {}}
    _, first = rpc(engine, "tools/call", {"name": "greet", "arguments": {}}, capabilities=caps)
    result = first["result"]
    assert result["resultType"] == "input_required"
    assert result["inputRequests"]["name"]["method"] == "elicitation/create"
    assert result["inputRequests"]["name"]["params"]["mode"] == "form"
    assert "ttlMs" not in result
    retry = {"name": "greet", "arguments": {}, "requestState": result["requestState"],
             "inputResponses": {"name": {"action": "accept", "content": {"name": "Ann"}}}}
    _, done = rpc(engine, "tools/call", retry, capabilities=caps)
    assert done["result"]["content"][0]["text"] == "Hello Ann (state {'step': 1})"
    assert done["result"]["resultType"] == "complete"

    # Tampered, replayed by another user, or on another tool: refused.
    for params, caller in (({**retry, "requestState": result["requestState"] + "x"}, ALICE), (retry, BOB)):
        status, answer = rpc(engine, "tools/call", params, capabilities=caps, caller=caller)
        assert (status, answer["error"]["code"]) == (200, -32602)
    # State sealed by another instance's key: not an error, the round trip starts again.
    _, again = rpc(build(key=b"z" * 32), "tools/call", retry, capabilities=caps)
    assert again["result"]["resultType"] == "input_required"
    # Malformed inputResponses are a protocol error.
    _, bad = rpc(engine, "tools/call", {**retry, "inputResponses": {"name": 5}}, capabilities=caps)
    assert bad["error"]["code"] == -32602


def test_mrtr_refuses_undeclared_capability() -> None:
    status, answer = rpc(build(), "tools/call", {"name": "needs_sampling", "arguments": {}}, capabilities={})
    assert status == 400
    assert answer["error"]["code"] == -32021
    assert answer["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


def test_mrtr_degrades_in_legacy_revisions() -> None:
    _, answer = rpc(build(), "tools/call", {"name": "greet", "arguments": {}}, version="2025-11-25")
    assert answer["result"]["isError"] is True
    assert "2026-07-28" in answer["result"]["content"][0]["text"]


def test_url_elicitation_required_maps_to_url_mode_when_declared() -> None:
    engine = build()
    url_mode = {"elicitation": {"url": {}}}
    _, asked = rpc(engine, "tools/call", {"name": "consent", "arguments": {}}, capabilities=url_mode)
    request = asked["result"]["inputRequests"]["url_elicitation"]
    assert request["params"]["mode"] == "url" and request["params"]["url"] == "https://example.test/consent"
    # Form-only client (empty elicitation object) and legacy clients: the isError fallback.
    for kwargs in ({"capabilities": {"elicitation": {}}}, {"version": "2025-11-25"}):
        _, fallback = rpc(engine, "tools/call", {"name": "consent", "arguments": {}}, **kwargs)
        assert fallback["result"]["isError"] is True
        assert "https://example.test/consent" in fallback["result"]["content"][0]["text"]


def test_request_state_codec_expiry_binding_and_key() -> None:
    codec = RequestStateCodec(b"s" * 32, ttl_seconds=10)
    token = codec.seal({"x": 1}, binding="tools/call:a", subject="t/u", now=1000)
    assert codec.open(token, binding="tools/call:a", subject="t/u", now=1005).data == {"x": 1}
    with pytest.raises(InvalidRequestState, match="expired"):
        codec.open(token, binding="tools/call:a", subject="t/u", now=1011)
    with pytest.raises(InvalidRequestState, match="another request"):
        codec.open(token, binding="tools/call:b", subject="t/u", now=1005)
    with pytest.raises(StaleRequestState):
        RequestStateCodec(b"o" * 32).open(token, binding="tools/call:a", subject="t/u", now=1005)
    with pytest.raises(ValueError):
        decode_key("c2hvcnQ=")
    assert decode_key("A" * 44) == b"\x00" * 33


def test_header_params_mirror_the_body() -> None:
    engine = build()
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
    tools = ToolRegistry()

    @tools.tool
    def where(region: str) -> str:
        """Where."""
        return region

    defn = tools.get("where")
    assert defn is not None
    defn.definition["inputSchema"] = schema
    engine.tools = tools
    params = {"name": "where", "arguments": {"region": "eu"}}
    assert rpc(engine, "tools/call", params, headers={"Mcp-Param-Region": "eu"})[1]["result"]["content"]
    assert rpc(engine, "tools/call", params, headers={"Mcp-Param-Region": "=?base64?ZXU=?="})[0] == 200
    for headers in ({}, {"Mcp-Param-Region": "us"}, {"Mcp-Param-Region": "=?base64?ZXU?="}):
        status, answer = rpc(engine, "tools/call", params, headers=headers)
        assert (status, answer["error"]["code"]) == (400, -32020)
