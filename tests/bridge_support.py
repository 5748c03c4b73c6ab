"""What the sign-in bridge tests share: a bridged server, a client-metadata host over HTTPS, and a browser.

The bridge is on when ENTRA_BRIDGE_CLIENT_ID is set; the session's function_app has it off (it was imported
with the plain settings), so these tests build a bridged McpServer and put it behind function_app's own
routes (``function_app.server`` is read at call time), then serve it with the loopback harness. The "browser"
is a few lines of HTTP: it follows the consent page's form and Entra's redirects the way a user clicking
Allow would, with the fake Entra ID answering over real HTTPS.
"""

from __future__ import annotations

import html
import json
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

import function_app
import tools as forker_tools
from conftest import ALLOWED_CLIENT_IDS, settings_env
from fake_entra import FakeEntra, shared_ca
from harness import FunctionsHarness
from shared.http.pipeline import McpServer
from shared.settings import load_settings

BRIDGE_CLIENT_ID = "5f0c2b1e-7d3a-4c8e-9b61-2a4d6e8f0a13"
VSCODE_METADATA_URL = "https://vscode.dev/oauth/client-metadata.json"


def bridge_env(fake: FakeEntra, **extra: str) -> dict[str, str]:
    return {
        **settings_env(fake),
        "ENTRA_BRIDGE_CLIENT_ID": BRIDGE_CLIENT_ID,
        "ENTRA_ALLOWED_CLIENT_IDS": f"{ALLOWED_CLIENT_IDS},{BRIDGE_CLIENT_ID}",
        "MCP_REQUEST_STATE_KEY": "c2lnbi1pbi1icmlkZ2UtdGVzdC1rZXktMzItYnl0ZXMtbG9uZw==",
        **extra,
    }


def bridged_server(fake: FakeEntra, **extra: str) -> McpServer:
    return McpServer(load_settings(bridge_env(fake, **extra)), forker_tools.tools, name="entra-mcp-server")


# The bridge's Entra redirect URIs: its own callback (loopback: any port, as on the real app registration).
BRIDGE_CALLBACKS = ("http://127.0.0.1/oauth/entra-callback", "http://localhost/oauth/entra-callback")


def register_bridge_app(fake: FakeEntra) -> None:
    """The bridge's Entra public client, as infra/modules/entra-bridge-app.bicep registers it."""
    fake.add_public_client(BRIDGE_CLIENT_ID, BRIDGE_CALLBACKS)
    fake.pre_authorize(BRIDGE_CLIENT_ID)


@contextmanager
def serving(server: McpServer) -> Iterator[FunctionsHarness]:
    """function_app's routes, answered by ``server``, on a loopback socket."""
    saved = function_app.server
    function_app.server = server
    try:
        with FunctionsHarness(function_app.app) as harness:
            yield harness
    finally:
        function_app.server = saved


class MetadataHost:
    """Serves client ID metadata documents over HTTPS on 127.0.0.1 (the fake Entra's throwaway CA)."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.fetches = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.fetches += 1
                document = host.documents.get(self.path)
                if document is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = document if isinstance(document, bytes) else json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        shared_ca().issue_cert("127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"https://{self.netloc}{path}"

    def publish(self, path: str, redirect_uris: list[str], *, name: str = "Test client",
                **fields: Any) -> str:
        url = self.url(path)
        self.documents[path] = {"client_id": url, "client_name": name, "redirect_uris": redirect_uris,
                                "grant_types": ["authorization_code", "refresh_token"],
                                "response_types": ["code"], "token_endpoint_auth_method": "none", **fields}
        return url

    def __enter__(self) -> MetadataHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
_COOKIE = re.compile(r"^(__Host-mcp-sign-in=[^;]*)")


class Browser:
    """A user's browser: keeps the bridge's cookie, submits the consent form, follows Entra's redirects."""

    def __init__(self, fake: FakeEntra) -> None:
        self.fake = fake
        self.cookie: str | None = None
        self.consent_pages = 0

    def get(self, url: str) -> requests.Response:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        response = requests.get(url, headers=headers, allow_redirects=False, timeout=10, verify=self.fake.ca_bundle)
        self._keep_cookie(response)
        return response

    def post_form(self, url: str, fields: Mapping[str, str], *, origin: str | None = None) -> requests.Response:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if origin:
            headers["Origin"] = origin
        response = requests.post(url, data=dict(fields), headers=headers, allow_redirects=False, timeout=10)
        self._keep_cookie(response)
        return response

    def _keep_cookie(self, response: requests.Response) -> None:
        set_cookie = response.headers.get("Set-Cookie")
        if set_cookie and (match := _COOKIE.match(set_cookie)):
            self.cookie = match.group(1)

    def sign_in(self, authorization_url: str, *, decision: str = "allow") -> dict[str, str]:
        """Start at the bridge's authorize URL, allow, and return the query the client's redirect URI gets."""
        response = self.get(authorization_url)
        if response.status_code == 200:
            self.consent_pages += 1
            fields = consent_fields(response.text)
            action = re.search(r'<form method="post" action="([^"]*)"', response.text)
            assert action is not None, response.text
            response = self.post_form(html.unescape(action.group(1)), {**fields, "decision": decision})
        assert response.status_code == 302, (response.status_code, response.text[:500])
        location = response.headers["Location"]
        bridge = urlsplit(authorization_url)
        callback = f"{bridge.scheme}://{bridge.netloc}/oauth/entra-callback"
        # Entra (signed in already, consent granted) answers at once; the bridge's callback passes the code on.
        for _ in range(3):
            if not location.startswith((self.fake.authority, callback)):
                break
            response = self.get(location)
            assert response.status_code == 302, (response.status_code, response.text[:500])
            location = response.headers["Location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} | {"_location": location}


def consent_fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}
