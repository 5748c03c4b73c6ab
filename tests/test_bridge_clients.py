"""Real MCP clients sign in through the sign-in bridge, end to end, and call a tool with the token they get.

Everything is real except the user: the official MCP Python SDK's ``OAuthClientProvider`` discovers the bridge
from the 401 challenge and the Protected Resource Metadata, identifies itself with a client ID metadata document
(served over HTTPS), sends the user to ``/oauth/authorize``; the scripted browser allows on the consent page,
the fake Entra ID (which enforces the 2026 ``resource`` rule and exact redirect URIs) returns a code to the
client's loopback redirect URI; the client redeems it at ``/oauth/token`` and calls ``whoami``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from bridge_support import BRIDGE_CLIENT_ID, Browser, MetadataHost, bridged_server, register_bridge_app, serving
from fake_entra import FakeEntra
from harness import FunctionsHarness

REDIRECT_URI = "http://127.0.0.1:53682/callback"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@pytest.fixture
def metadata_host() -> Iterator[MetadataHost]:
    with MetadataHost() as host:
        yield host


@pytest.fixture
def bridged(entra: FakeEntra, metadata_host: MetadataHost) -> Iterator[FunctionsHarness]:
    register_bridge_app(entra)
    server = bridged_server(entra, MCP_BRIDGE_CLIENT_METADATA_HOSTS=f"vscode.dev,{metadata_host.netloc}")
    with serving(server) as harness:
        yield harness


def _provider(url: str, browser: Browser, storage: MemoryStorage, *, metadata_url: str | None) -> OAuthClientProvider:
    pending: dict[str, str] = {}

    async def redirect_handler(authorization_url: str) -> None:
        pending["url"] = authorization_url

    async def callback_handler() -> AuthorizationCodeResult:
        answer = await asyncio.to_thread(browser.sign_in, pending.pop("url"))
        assert answer["_location"].startswith(REDIRECT_URI), answer
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"))

    metadata = OAuthClientMetadata(
        client_name="SDK test client", redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"], response_types=["code"], token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(url, metadata, storage, redirect_handler=redirect_handler,
                               callback_handler=callback_handler, client_metadata_url=metadata_url)


def _whoami(url: str, provider: OAuthClientProvider) -> Any:
    async def main() -> Any:
        async with (
            httpx2.AsyncClient(auth=provider, timeout=20) as http,
            Client(streamable_http_client(url, http_client=http), mode="auto") as client,
        ):
            return await client.call_tool("whoami", {})

    return asyncio.run(main())


def test_python_sdk_signs_in_with_a_metadata_document(
    bridged: FunctionsHarness, entra: FakeEntra, metadata_host: MetadataHost
) -> None:
    metadata_url = metadata_host.publish("/oauth/sdk-client.json", [REDIRECT_URI], name="SDK test client")
    browser, storage = Browser(entra), MemoryStorage()
    result = _whoami(bridged.url + "/mcp", _provider(bridged.url + "/mcp", browser, storage, metadata_url=metadata_url))

    assert result.is_error is False
    identity = result.structured_content
    assert identity["client_app_id"] == BRIDGE_CLIENT_ID  # Entra issued the token to the bridge's public client
    assert identity["oid"] == entra.user_oid("alice")
    assert browser.consent_pages == 1
    # What reached Entra: the bridge's client ID and callback, a challenge bound to this client (not the
    # client's own), no resource.
    [authorize] = entra.authorize_requests
    assert authorize["client_id"] == BRIDGE_CLIENT_ID
    assert authorize["redirect_uri"] == bridged.url + "/oauth/entra-callback"
    assert "resource" not in authorize and authorize["code_challenge_method"] == "S256"
    assert "offline_access" in authorize["scope"].split()
    redemption = [r for r in entra.token_requests if r.get("grant_type") == "authorization_code"]
    assert len(redemption) == 1 and redemption[0]["client_id"] == BRIDGE_CLIENT_ID
    assert redemption[0]["redirect_uri"] == bridged.url + "/oauth/entra-callback"
    assert "resource" not in redemption[0]
    assert storage.tokens is not None and storage.tokens.refresh_token
    assert storage.client is not None and storage.client.client_id == metadata_url
    assert metadata_host.fetches == 1  # fetched once, then cached for the token request


def test_python_sdk_signs_in_with_dynamic_registration(bridged: FunctionsHarness, entra: FakeEntra) -> None:
    browser, storage = Browser(entra), MemoryStorage()
    result = _whoami(bridged.url + "/mcp", _provider(bridged.url + "/mcp", browser, storage, metadata_url=None))

    assert result.is_error is False
    assert result.structured_content["client_app_id"] == BRIDGE_CLIENT_ID
    assert storage.client is not None and storage.client.client_id.startswith("mcp-dcr.")


def test_a_second_sign_in_from_the_same_browser_skips_the_consent_page(
    bridged: FunctionsHarness, entra: FakeEntra, metadata_host: MetadataHost
) -> None:
    metadata_url = metadata_host.publish("/oauth/sdk-client.json", [REDIRECT_URI])
    browser = Browser(entra)
    for _ in range(2):
        provider = _provider(bridged.url + "/mcp", browser, MemoryStorage(), metadata_url=metadata_url)
        assert _whoami(bridged.url + "/mcp", provider).is_error is False
    assert browser.consent_pages == 1
    assert len(entra.authorize_requests) == 2
