"""The app under the real Azure Functions Python worker, as Azure runs it on Python 3.13+.

tests/worker/host.py drives ``azure-functions-runtime`` in-process the way the host's proxy worker does
(WorkerInitRequest, FunctionsMetadataRequest, FunctionLoadRequest, InvocationRequest with ``RpcHttp``) and serves
the indexed HTTP functions on a loopback port; this module starts it in the Python 3.13 worker venv (only
requirements.txt and the worker: what Azure installs) with the session's fake Entra settings and checks, over
the socket, what a client sees. Everything else in the suite uses the in-process harness (tests/harness.py).

Without Python 3.13 or the worker packages these tests skip with the reason; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import settings_env
from fake_entra import VSCODE_CLIENT_ID, FakeEntra

sys.path.append(str(Path(__file__).resolve().parent / "worker"))  # last: never shadows the app or tests/
from launch import WorkerHost, unavailable

PROTOCOL = "2025-11-25"
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL}
TIMEOUT = 10


def _require_worker() -> None:
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the Functions worker tests: {reason}", pytrace=False)
    pytest.skip(reason)


def _env(fake: FakeEntra) -> dict[str, str]:
    return {**settings_env(fake), "REQUESTS_CA_BUNDLE": fake.ca_bundle, "SSL_CERT_FILE": fake.ca_bundle}


@pytest.fixture(scope="module")
def worker(fake_entra: FakeEntra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHost]:
    _require_worker()
    log = tmp_path_factory.mktemp("worker") / "host.log"
    with WorkerHost(_env(fake_entra), log, unset=("ENTRA_BRIDGE_CLIENT_ID",)) as host:
        assert host.ready, f"the worker host did not start: {host.event}\n{host.logs()[-4000:]}"
        yield host


def _call(url: str, method: str, params: dict[str, Any], token: str | None) -> httpx2.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return httpx2.post(url + "/mcp", json=body, headers=headers, timeout=TIMEOUT)


def test_the_worker_indexes_function_app(worker: WorkerHost) -> None:
    event = worker.event
    assert event["versions"]["python"].startswith("3.13.")
    assert event["versions"]["azure-functions-runtime"] != "missing"
    assert event["versions"]["azure-functions"].startswith("2.")  # the 3.13+ line (requirements.txt markers)
    routes = {f["route"]: set(f["methods"]) for f in event["functions"]}
    # host.json routePrefix "" puts the routes at the root, as the README's URLs say.
    assert routes["/mcp"] == {"POST", "GET", "DELETE", "OPTIONS"}
    assert "GET" in routes["/.well-known/oauth-protected-resource/mcp"]
    assert "GET" in routes["/.well-known/oauth-authorization-server"]
    assert {"/oauth/authorize", "/oauth/token", "/oauth/register", "/consent"} <= set(routes)
    assert event["seconds"]["total"] < 30


def test_post_mcp_without_a_token_gets_the_challenge(worker: WorkerHost, fake_entra: FakeEntra) -> None:
    response = _call(worker.url, "tools/list", {}, token=None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{worker.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert f'scope="api://{fake_entra.api_client_id}/user_impersonation"' in challenge


def test_protected_resource_metadata(worker: WorkerHost, fake_entra: FakeEntra) -> None:
    response = httpx2.get(worker.url + "/.well-known/oauth-protected-resource/mcp", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    metadata = response.json()
    assert metadata["resource"] == worker.url + "/mcp"
    assert metadata["authorization_servers"] == [fake_entra.issuer]
    assert metadata["scopes_supported"] == [f"api://{fake_entra.api_client_id}/user_impersonation"]


def test_authenticated_tools_call_whoami(worker: WorkerHost, fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(user="alice")
    response = _call(worker.url, "tools/call", {"name": "whoami", "arguments": {}}, token=token)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert not result.get("isError")
    identity = result["structuredContent"]
    assert identity["preferred_username"] == "alice@contoso.example"
    assert identity["oid"] == fake_entra.user_oid("alice")
    assert identity["tid"] == fake_entra.tenant_id
    assert identity["client_app_id"] == VSCODE_CLIENT_ID
    # The request log line went through the worker's logging, without the token.
    logs = worker.logs()
    assert "status=200" in logs
    assert token not in logs


def test_an_invalid_token_is_refused_with_invalid_token(worker: WorkerHost, fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(user="alice", claims={"aud": "api://someone-else"})
    response = _call(worker.url, "tools/list", {}, token=token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in worker.logs()


def test_the_bridge_is_off_without_its_setting(worker: WorkerHost) -> None:
    response = httpx2.get(worker.url + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_routing_is_the_hosts(worker: WorkerHost, fake_entra: FakeEntra) -> None:
    # GET is routed to the code, which answers 405; a method or path no function registers is the host's 404.
    headers = {**HEADERS, "Authorization": f"Bearer {fake_entra.mint()}"}
    get = httpx2.get(worker.url + "/mcp", headers=headers, timeout=TIMEOUT)
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert httpx2.put(worker.url + "/mcp", timeout=TIMEOUT).status_code == 404
    assert httpx2.get(worker.url + "/api/mcp", timeout=TIMEOUT).status_code == 404


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_official_sdk_client_over_the_worker(worker: WorkerHost, fake_entra: FakeEntra, mode: str) -> None:
    token = fake_entra.mint(user="alice")

    async def main() -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT) as http,
            Client(streamable_http_client(worker.url + "/mcp", http_client=http), mode=mode) as client,
        ):
            tools = await client.list_tools()
            result = await client.call_tool("whoami", {})
            return client.protocol_version, tools, result

    version, tools, result = asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert [t.name for t in tools.tools] == ["whoami", "get_my_profile"]
    assert result.is_error is False
    assert result.structured_content["oid"] == fake_entra.user_oid("alice")


def test_a_missing_setting_stops_the_worker_and_is_named(fake_entra: FakeEntra, tmp_path: Path) -> None:
    _require_worker()
    with WorkerHost(_env(fake_entra), tmp_path / "host.log", unset=("ENTRA_TENANT_ID",)) as host:
        pass
    assert host.event["event"] == "failed", host.event
    assert host.event["stage"] == "WorkerInitRequest"  # indexing fails, as a cold start does in Azure
    assert host.returncode == 1
    message = host.event["exception"]["message"]
    assert "ENTRA_TENANT_ID" in message
    assert "ENTRA_CLIENT_ID" not in message  # only the missing one is named
    assert "ENTRA_TENANT_ID" in host.logs()


def test_the_sign_in_bridge_and_its_cookie_through_the_worker(fake_entra: FakeEntra, tmp_path: Path) -> None:
    # The consent cookie crosses the worker as an RpcHttpCookie (parsed from Set-Cookie, rendered again by the
    # host): its name and every attribute must survive, and the browser's next request must be accepted with it.
    _require_worker()
    from urllib.parse import urlencode, urlsplit

    from bridge_support import bridge_env, consent_fields

    env = {**bridge_env(fake_entra), "REQUESTS_CA_BUNDLE": fake_entra.ca_bundle, "SSL_CERT_FILE": fake_entra.ca_bundle}
    with WorkerHost(env, tmp_path / "host.log") as host:
        assert host.ready, f"{host.event}\n{host.logs()[-4000:]}"
        url = host.url
        metadata = httpx2.get(url + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
        assert metadata.status_code == 200
        assert metadata.json()["registration_endpoint"] == url + "/oauth/register"
        registered = httpx2.post(url + "/oauth/register", json={"redirect_uris": ["http://127.0.0.1/callback"]},
                                 timeout=TIMEOUT)
        assert registered.status_code in (200, 201), registered.text
        query = {"response_type": "code", "client_id": registered.json()["client_id"],
                 "redirect_uri": "http://127.0.0.1:4000/callback", "state": "s1", "code_challenge": "c" * 43,
                 "code_challenge_method": "S256", "resource": url + "/mcp"}
        page = httpx2.get(url + "/oauth/authorize?" + urlencode(query), timeout=TIMEOUT)
        assert page.status_code == 200, page.text[:500]
        [set_cookie] = page.headers.get_list("set-cookie")
        name_value, *attributes = [part.strip() for part in set_cookie.split(";")]
        assert name_value.startswith("__Host-mcp-sign-in=") and len(name_value) > len("__Host-mcp-sign-in=")
        flags = {name.lower(): value for name, _, value in (a.partition("=") for a in attributes)}
        assert flags.keys() >= {"path", "secure", "httponly", "samesite", "max-age"}, set_cookie
        assert flags["path"] == "/" and flags["samesite"].lower() == "lax" and int(flags["max-age"]) > 0

        allow = httpx2.post(url + "/oauth/authorize", data={**consent_fields(page.text), "decision": "allow"},
                            headers={"Cookie": name_value, "Origin": url}, timeout=TIMEOUT)
        assert allow.status_code == 302, allow.text[:500]
        location = urlsplit(allow.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == fake_entra.authorize_endpoint
