"""The sign-in bridge in a real browser: headless Chromium clicks Allow on the consent page.

What scripted HTTP cannot show: that a real browser keeps the ``__Host-`` cookie on ``http://localhost`` and
``http://127.0.0.1`` (``func start``), sends the consent form with an Origin the bridge accepts, carries the
cookie back to ``/oauth/entra-callback`` after Entra, and does *not* send it with a form posted from another site.
Chromium and ChromeDriver come from Debian (``.ci/run`` installs them in CI); without them these tests skip
locally and fail in CI. The fake Entra ID's throwaway CA is not in Chromium's store, so only this test browser
is told to accept its certificate; the product's own TLS checks are untouched.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from bridge_support import Browser, bridged_server, consent_fields, register_bridge_app, serving
from fake_entra import FakeEntra
from harness import FunctionsHarness

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_SECONDS = 10.0

webdriver = pytest.importorskip("selenium.webdriver")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    if os.environ.get("CI"):
        pytest.fail("Chromium and ChromeDriver are required in CI (apt-get install chromium chromium-driver)",
                    pytrace=False)
    pytest.skip("no chromium/chromedriver on this machine (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


class ClientCallback:
    """The MCP client's loopback redirect URI: records the query it is sent to."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.pages: dict[str, bytes] = {}
        callback = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                body = callback.pages.get(parts.path)
                if body is None:
                    callback.received.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                    body = b"<!doctype html><title>signed in</title>You can close this window."
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.port = self._server.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/callback") -> str:
        return f"http://{host}:{self.port}{path}"

    def wait(self) -> dict[str, str] | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.received:
                return self.received[-1]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _browser(profile: str) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--ignore-certificate-errors", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    return driver


@pytest.fixture
def browsers() -> Iterator[Any]:
    """Makes browsers, each with its own empty profile (cookies), and closes them all."""
    made: list[Any] = []
    folders: list[tempfile.TemporaryDirectory[str]] = []

    def make() -> Any:
        folders.append(tempfile.TemporaryDirectory(prefix="bridge-browser-"))
        made.append(_browser(folders[-1].name))
        return made[-1]

    yield make
    for driver in made:
        driver.quit()
    for folder in folders:
        folder.cleanup()


@pytest.fixture
def bridged(entra: FakeEntra) -> Iterator[FunctionsHarness]:
    register_bridge_app(entra)
    with serving(bridged_server(entra)) as harness:
        yield harness


@pytest.fixture
def client_callback() -> Iterator[ClientCallback]:
    callback = ClientCallback()
    yield callback
    callback.close()


def _pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _authorize_url(base: str, client_id: str, redirect_uri: str, challenge: str) -> str:
    return base + "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "client-state",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": base + "/mcp"})


def _register(base: str, redirect_uri: str) -> str:
    answer = requests.post(base + "/oauth/register", json={"redirect_uris": [redirect_uri],
                                                           "client_name": "Browser test"}, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_real_browser_allows_and_the_client_gets_a_working_token(
    bridged: FunctionsHarness, entra: FakeEntra, client_callback: ClientCallback, browsers: Any, host: str
) -> None:
    base = bridged.url.replace("127.0.0.1", host)
    redirect = client_callback.url()
    client_id = _register(base, redirect)
    verifier, challenge = _pkce()
    browser = browsers()

    browser.get(_authorize_url(base, client_id, redirect, challenge))
    assert "Allow this app" in browser.title
    assert [c["name"] for c in browser.get_cookies()] == ["__Host-mcp-sign-in"]
    browser.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    answer = client_callback.wait()
    assert answer is not None, browser.page_source[:500]
    assert answer["state"] == "client-state" and answer["code"]

    tokens = requests.post(base + "/oauth/token", data={
        "grant_type": "authorization_code", "client_id": client_id, "code": answer["code"],
        "redirect_uri": redirect, "code_verifier": verifier}, timeout=10)
    assert tokens.status_code == 200, tokens.text
    whoami = requests.post(base + "/mcp", timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
        headers={"Authorization": f"Bearer {tokens.json()['access_token']}", "MCP-Protocol-Version": "2025-11-25",
                 "Accept": "application/json, text/event-stream"})
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["result"]["structuredContent"]["oid"] == entra.user_oid("alice")

    # The same browser, the same client: the remembered consent sends it straight on.
    client_callback.received.clear()
    browser.get(_authorize_url(base, client_id, redirect, _pkce()[1]))
    assert client_callback.wait() is not None
    assert len(entra.authorize_requests) == 2


def test_a_link_to_entra_made_in_another_browser_stops_at_the_bridge(
    bridged: FunctionsHarness, entra: FakeEntra, client_callback: ClientCallback, browsers: Any
) -> None:
    # The attacker consents to their own client in their browser and keeps the Entra URL it is sent to.
    base, redirect = bridged.url, client_callback.url()
    client_id = _register(base, redirect)
    attacker = Browser(entra)  # scripted: keeps the bridge's cookie by hand
    page = attacker.get(_authorize_url(base, client_id, redirect, _pkce()[1]))
    decision = attacker.post_form(base + "/oauth/authorize", {**consent_fields(page.text), "decision": "allow"})
    entra_link = decision.headers["Location"]
    assert entra_link.startswith(entra.authority)

    victim = browsers()
    victim.get(entra_link)  # signed in to Entra already: Entra answers at once, to the bridge's callback
    deadline = time.monotonic() + WAIT_SECONDS
    while "/oauth/entra-callback" not in victim.current_url and time.monotonic() < deadline:
        time.sleep(0.05)
    assert urlsplit(victim.current_url).path == "/oauth/entra-callback"
    assert "not started in this browser" in victim.page_source
    assert client_callback.received == []  # no code reached any client


def test_a_consent_form_posted_from_another_site_is_refused(
    bridged: FunctionsHarness, entra: FakeEntra, client_callback: ClientCallback, browsers: Any
) -> None:
    # The victim has a bridge cookie (they opened a consent page once); another site posts "allow" for them,
    # with a form token from its own session. localhost and 127.0.0.1 are different sites, so the
    # SameSite=Lax cookie stays home.
    base, redirect = bridged.url, client_callback.url()
    client_id = _register(base, redirect)
    page = Browser(entra).get(_authorize_url(base, client_id, redirect, _pkce()[1]))
    fields = consent_fields(page.text)
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in fields.items())
    client_callback.pages["/evil"] = (
        f'<!doctype html><form id="f" method="post" action="{base}/oauth/authorize">{inputs}'
        '<input type="hidden" name="decision" value="allow"></form><script>f.submit()</script>').encode()

    victim = browsers()
    victim.get(_authorize_url(base, client_id, redirect, _pkce()[1]))  # the victim's own cookie
    assert "Allow this app" in victim.title
    victim.get(client_callback.url(host="localhost", path="/evil"))
    deadline = time.monotonic() + WAIT_SECONDS
    while "/oauth/authorize" not in victim.current_url and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "did not come from this browser" in victim.page_source or "another site" in victim.page_source
    assert client_callback.received == []
