"""Issue 10's findings that live at the edge: loopback hosts in Azure, the PyJWT floor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fake_entra import FakeEntra
from shared.http.messages import HttpRequest
from shared.http.pipeline import McpServer
from shared.settings import load_settings
from test_endpoint import rpc, test_tools

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("host", ["localhost", "localhost:7071", "127.0.0.1:7071", "[::1]:7071"])
def test_loopback_hosts_are_refused_in_azure(app_env: dict[str, str], host: str) -> None:
    azure = McpServer(load_settings({**app_env, "WEBSITE_HOSTNAME": "func-mcp.azurewebsites.net"}), test_tools)
    request = HttpRequest("POST", f"http://{host}/mcp", {"host": host, "content-type": "application/json"},
                          str(rpc("tools/list")).encode())
    assert azure.handle_mcp(request).status == 421
    metadata = HttpRequest("GET", f"http://{host}/.well-known/oauth-protected-resource/mcp", {"host": host})
    assert azure.handle_metadata(metadata).status == 421
    # Its own host name is served, and locally loopback still is.
    own = HttpRequest("GET", "https://func-mcp.azurewebsites.net/.well-known/oauth-protected-resource/mcp",
                      {"host": "func-mcp.azurewebsites.net"})
    assert azure.handle_metadata(own).json["resource"] == "https://func-mcp.azurewebsites.net/mcp"
    local = McpServer(load_settings(app_env), test_tools)
    assert local.handle_metadata(HttpRequest(metadata.method, metadata.url, metadata.headers)).status == 200


def test_pyjwt_floor_excludes_the_issuer_partial_match_release(entra: FakeEntra) -> None:
    # CVE-2024-53861: PyJWT 2.10.0 accepted an issuer that merely contained the expected one.
    line = next(x for x in (REPO / "requirements.txt").read_text().splitlines() if x.lower().startswith("pyjwt"))
    floor = re.search(r">=\s*([0-9.]+)", line)
    assert floor is not None, line
    assert tuple(int(p) for p in floor.group(1).split(".")) >= (2, 10, 1), line
