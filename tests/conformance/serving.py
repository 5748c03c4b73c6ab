"""Serve the conformance fixture over loopback with auth on, behind a token-injecting proxy.

The conformance suite sends no ``Authorization`` header and has no option for one. Rather than
switching auth off, a loopback proxy in front of the app adds ``Authorization: Bearer <token>`` with a
token minted by the fake Entra ID, and passes everything else (Host and Origin included, so the DNS
rebinding checks still reach the app) through unchanged.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer",
               "content-length"}


class TokenProxy:
    """Forward every request to ``upstream`` with a fresh bearer token from ``token()``."""

    def __init__(self, upstream: str, token: Callable[[], str], host: str = "127.0.0.1") -> None:
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "authorization":
                            conn.putheader(name, value)
                    conn.putheader("Authorization", f"Bearer {token()}")
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    response = conn.getresponse()
                    payload = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy.requests += 1
                finally:
                    conn.close()

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_HEAD = _forward

        self.requests = 0
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> TokenProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serve_fixture(token: Callable[[], str]) -> Iterator[str]:
    """Yield the proxied MCP endpoint URL of the fixture app, served by the Functions harness."""
    import fixture_app

    from harness import FunctionsHarness

    with FunctionsHarness(fixture_app.app) as harness, TokenProxy(harness.url, token) as proxy:
        yield proxy.url + "/mcp"
