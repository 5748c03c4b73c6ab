"""The official MCP Python SDK client talks to the app over a real socket, with a real token.

The app is served by the loopback harness exactly as the Functions host would route it;
the client gets a token from the fake Entra ID, so nothing about auth is switched off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import function_app
from harness import FunctionsHarness


@pytest.fixture(scope="module")
def served() -> Iterator[FunctionsHarness]:
    with FunctionsHarness(function_app.app) as harness:
        yield harness


def _run(url: str, token: str | None, mode: str, action: Any) -> Any:
    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=10) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            return await action(client)

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_lists_and_calls_whoami(served: FunctionsHarness, fake_entra: Any, mode: str) -> None:
    token = fake_entra.mint(user="alice")

    async def action(client: Client) -> Any:
        tools = await client.list_tools()
        result = await client.call_tool("whoami", {})
        return client.protocol_version, tools, result

    version, tools, result = _run(served.url + "/mcp", token, mode, action)

    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert [t.name for t in tools.tools] == ["whoami", "get_my_profile"]  # tools.py order
    assert tools.tools[0].annotations.read_only_hint is True
    assert result.is_error is False
    identity = result.structured_content
    assert identity["preferred_username"] == "alice@contoso.example"
    assert identity["oid"] == fake_entra.user_oid("alice")
    assert identity["tid"] == fake_entra.tenant_id
    assert identity["scopes"] == ["user_impersonation"]
    assert identity["client_app_id"] == "aebc6443-996d-45c2-90f0-388ff96faa56"
    assert "alice@contoso.example" in result.content[0].text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_without_token_is_refused(served: FunctionsHarness, mode: str) -> None:
    async def action(client: Client) -> Any:
        return await client.list_tools()

    # The SDK surfaces the refusal differently per mode; what matters is that nothing is served.
    with pytest.raises(BaseException):  # noqa: B017
        _run(served.url + "/mcp", None, mode, action)


def test_unauthenticated_socket_request_gets_the_challenge(served: FunctionsHarness) -> None:
    response = httpx2.post(served.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{served.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    metadata = httpx2.get(served.url + "/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == served.url + "/mcp"
