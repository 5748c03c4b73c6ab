"""A local fake of Microsoft Graph over real HTTPS (certificate from fake_entra's throwaway CA).

It accepts only access tokens that the fake Entra issued through on-behalf-of (so a forwarded MCP
client token is refused, as real Graph would refuse a token for another audience), records every
request's Authorization header, and can be told to throttle, fail or answer slowly.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt

from fake_entra import FakeEntra, TLSServer, shared_ca


class _Handler(BaseHTTPRequestHandler):
    server: TLSServer
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, body, headers = self.server.fake._answer(self.path, self.headers.get("Authorization", ""))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class FakeGraph:
    """Fake Graph at ``base_url`` (``https://127.0.0.1:PORT/v1.0``) trusting tokens from ``entra``."""

    def __init__(self, entra: FakeEntra) -> None:
        self.entra = entra
        self._lock = threading.Lock()
        self.authorizations: list[str] = []  # the Authorization header of every request, in order
        self.paths: list[str] = []
        self._queued: list[tuple[int, Any, dict[str, str], float]] = []
        self.delay_seconds = 0.0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        shared_ca().issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = TLSServer(self, context, _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-graph", daemon=True)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """What GRAPH_API_BASE_URL is set to."""
        return self.origin + "/v1.0"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.paths)

    def queue_response(
        self, status: int, body: Any, *, headers: dict[str, str] | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with this response (after ``delay`` seconds)."""
        with self._lock:
            self._queued.extend([(status, body, dict(headers or {}), delay)] * times)

    def _answer(self, path: str, authorization: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.authorizations.append(authorization)
            self.paths.append(path)
            queued = self._queued.pop(0) if self._queued else None
            delay = self.delay_seconds
        time.sleep(delay)
        if queued is not None:
            status, body, headers, queued_delay = queued
            time.sleep(queued_delay)
            return status, body, headers
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        claims = self._verify(token)
        if claims is None:
            return 401, _error("InvalidAuthenticationToken", "Access token validation failure. Invalid audience."), {
                "WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        if path.split("?", 1)[0] != "/v1.0/me":
            return 404, _error("Request_ResourceNotFound", "Resource not found."), {}
        if "User.Read" not in str(claims.get("scp", "")).split():
            return 403, _error("Authorization_RequestDenied", "Insufficient privileges to complete the operation."), {}
        user = str(claims.get("preferred_username", ""))
        return 200, {
            "@odata.context": f"{self.base_url}/$metadata#users/$entity",
            "id": claims.get("oid"),
            "displayName": claims.get("name"),
            "userPrincipalName": user,
            "mail": user,
            "jobTitle": "Engineer",
            "officeLocation": None,
        }, {}

    def _verify(self, token: str) -> dict[str, Any] | None:
        """Claims of an OBO token the fake Entra issued for this Graph; None for anything else."""
        if token not in self.entra.issued_obo_tokens:
            return None
        try:
            kid = jwt.get_unverified_header(token)["kid"]
            return jwt.decode(token, self.entra.public_key_pem(kid), algorithms=["RS256"], audience=self.origin)
        except (jwt.PyJWTError, KeyError):
            return None

    def __enter__(self) -> FakeGraph:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}
