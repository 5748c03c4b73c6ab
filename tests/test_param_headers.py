"""Param(header=...) end to end: a tool declares x-mcp-header, the engine holds Mcp-Param-* headers to the body.

Requests go through ``McpServer`` behind the Functions adapter with real tokens from the fake Entra tenant
(auth stays on). The last test has the official MCP Python SDK client list the tool (it drops tools whose
x-mcp-header it finds invalid) and call it, mirroring the header itself.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any

import azure.functions as func
import pytest

from fake_entra import FakeEntra
from harness import FunctionsHarness
from shared.features.schema import Param
from shared.features.tools import ToolRegistry
from shared.http.functions import serve
from shared.http.pipeline import McpServer
from test_endpoint import Handler, Reply, auth, call_modern, handler_for, legacy, make_server, request, rpc

registry = ToolRegistry()


@registry.tool
def run_query(
    region: Annotated[str, Param(description="Region", header="Region")],
    query: str,
    shard: Annotated[int | None, Param(header="Shard")] = None,
) -> str:
    """Run a query in a region."""
    return f"{query} in {region} on shard {shard}"


def b64(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


@pytest.fixture(scope="module")
def server(fake_entra: FakeEntra) -> McpServer:
    return make_server(fake_entra, registry)


@pytest.fixture(scope="module")
def handler(server: McpServer) -> Handler:
    return handler_for(server)


def call(token: str, handler: Handler, arguments: dict[str, Any], **headers: str | None) -> Reply:
    params = {"name": "run_query", "arguments": arguments}
    return call_modern(token, "tools/call", params, name="run_query", handler=handler, **headers)


def assert_mismatch(reply: Reply) -> None:
    assert reply.status == 400, reply.body
    assert reply.json["error"]["code"] == -32020


def test_the_definition_declares_the_headers(token: str, handler: Handler) -> None:
    reply = call_modern(token, "tools/list", handler=handler)
    assert reply.status == 200
    (tool,) = reply.json["result"]["tools"]
    properties = tool["inputSchema"]["properties"]
    assert properties["region"]["x-mcp-header"] == "Region"
    assert properties["shard"]["x-mcp-header"] == "Shard"
    assert "x-mcp-header" not in properties["query"]


def test_matching_header_passes(token: str, handler: Handler) -> None:
    reply = call(token, handler, {"region": "eu-west", "query": "q"}, **{"Mcp-Param-Region": "eu-west"})
    assert reply.status == 200, reply.body
    assert reply.json["result"]["content"][0]["text"] == "q in eu-west on shard None"
    # Header names are case-insensitive; integers compare as numbers.
    reply = call(token, handler, {"region": "eu", "query": "q", "shard": 7},
                 **{"mcp-param-region": "eu", "MCP-PARAM-SHARD": "7"})
    assert reply.status == 200, reply.body
    assert reply.json["result"]["content"][0]["text"] == "q in eu on shard 7"


def test_base64_sentinel_values_are_decoded(token: str, handler: Handler) -> None:
    for region in ("Zürich", " padded ", "=?base64?literal?=", "plain"):
        reply = call(token, handler, {"region": region, "query": "q"}, **{"Mcp-Param-Region": b64(region)})
        assert reply.status == 200, (region, reply.body)
        assert reply.json["result"]["content"][0]["text"] == f"q in {region} on shard None"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # missing
        {"Mcp-Param-Region": "us-east"},  # mismatched
        {"Mcp-Param-Region": "EU-WEST"},  # values are case-sensitive
        {"Mcp-Param-Region": b64("us-east")},  # mismatched after decoding
        {"Mcp-Param-Region": "=?base64?not base64?="},  # malformed sentinel
        {"Mcp-Param-Region": "eu-west", "Mcp-Param-Shard": "8"},  # the second one mismatches
        {"Mcp-Param-Region": "eu-west"},  # the shard header is missing
    ],
)
def test_missing_or_mismatched_header_is_refused(token: str, handler: Handler, headers: dict[str, str]) -> None:
    assert_mismatch(call(token, handler, {"region": "eu-west", "query": "q", "shard": 7}, **headers))


def test_absent_optional_value_needs_no_header_and_null_is_not_a_value(token: str, handler: Handler) -> None:
    reply = call(token, handler, {"region": "eu", "query": "q"}, **{"Mcp-Param-Region": "eu"})
    assert reply.status == 200
    # The spec has clients omit the header for null; the schema (plain integer) then rejects the null itself.
    reply = call(token, handler, {"region": "eu", "query": "q", "shard": None}, **{"Mcp-Param-Region": "eu"})
    assert reply.status == 200
    result = reply.json["result"]
    assert result["isError"] is True
    assert "arguments.shard: expected integer, got null" in result["content"][0]["text"]


def test_legacy_clients_send_no_param_headers(token: str, handler: Handler) -> None:
    reply = legacy(token, "tools/call", {"name": "run_query", "arguments": {"region": "eu", "query": "q"}},
                   handler=handler)
    assert reply.status == 200
    assert reply.json["result"]["content"][0]["text"] == "q in eu on shard None"


def legacy_with(token: str, handler: Handler, arguments: dict[str, Any], version: str | None = "2025-11-25",
                **headers: str) -> Reply:
    all_headers = {**auth(token), **headers}
    if version is not None:
        all_headers["MCP-Protocol-Version"] = version
    return request(body=rpc("tools/call", {"name": "run_query", "arguments": arguments}), headers=all_headers,
                   handler=handler)


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26", None])
@pytest.mark.parametrize(
    "headers",
    [
        {"Mcp-Name": "drop_tables"},  # a gateway authorising on the name would see another tool
        {"Mcp-Method": "tools/list"},  # ... or another method
        {"Mcp-Param-Region": "us-east"},  # ... or route to another region
        {"Mcp-Param-Region": "eu-west", "Mcp-Param-Shard": "7"},  # a header for an argument the body omits
    ],
)
def test_legacy_routing_headers_that_disagree_with_the_body_are_refused(
    token: str, handler: Handler, version: str | None, headers: dict[str, str]
) -> None:
    assert_mismatch(legacy_with(token, handler, {"region": "eu-west", "query": "q"}, version, **headers))


def test_legacy_routing_headers_that_agree_with_the_body_are_served(token: str, handler: Handler) -> None:
    reply = legacy_with(token, handler, {"region": "eu-west", "query": "q", "shard": 7}, **{
        "Mcp-Method": "tools/call", "Mcp-Name": "run_query", "Mcp-Param-Region": "eu-west", "Mcp-Param-Shard": "7"})
    assert reply.status == 200, reply.body
    assert reply.json["result"]["content"][0]["text"] == "q in eu-west on shard 7"


@pytest.mark.parametrize("shard", ["+7", "07", "7.0", "7e0", "\uff17"])
def test_integer_headers_must_be_canonical_decimal(token: str, handler: Handler, shard: str) -> None:
    reply = call(token, handler, {"region": "eu", "query": "q", "shard": 7},
                 **{"Mcp-Param-Region": "eu", "Mcp-Param-Shard": shard})
    assert_mismatch(reply)


def test_the_mcp_sdk_client_keeps_the_tool_and_mirrors_the_header(server: McpServer, fake_entra: FakeEntra) -> None:
    httpx2 = pytest.importorskip("httpx2")
    mcp = pytest.importorskip("mcp")
    from mcp.client.streamable_http import streamable_http_client

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="mcp", methods=["POST", "GET", "DELETE", "OPTIONS"])
    def mcp_endpoint(req: func.HttpRequest) -> func.HttpResponse:
        return serve(server.handle_mcp, req)

    async def main(url: str) -> tuple[str, list[str], Any]:
        headers = {"Authorization": f"Bearer {fake_entra.mint()}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=10) as http,
            mcp.Client(streamable_http_client(url, http_client=http), mode="auto") as client,
        ):
            listed = await client.list_tools()
            result = await client.call_tool("run_query", {"region": "Zürich", "query": "q", "shard": 3})
            return client.protocol_version, [t.name for t in listed.tools], result

    with FunctionsHarness(app) as harness:
        version, names, result = asyncio.run(main(harness.url + "/mcp"))
    assert version == "2026-07-28"
    assert names == ["run_query"]
    assert result.is_error is False
    assert result.content[0].text == "q in Zürich on shard 3"
