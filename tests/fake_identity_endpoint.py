"""A fake App Service / Azure Functions managed identity endpoint.

Azure sets ``IDENTITY_ENDPOINT`` (a loopback HTTP URL) and ``IDENTITY_HEADER`` (a per-process secret the
caller must echo in ``X-IDENTITY-HEADER``); azure-identity's ManagedIdentityCredential calls
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...&client_id=...``. This fake answers like that
endpoint, with a token signed by the fake Entra: for ``api://AzureADTokenExchange`` it is the federated
assertion the server presents to Entra as its client credential.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fake_entra import FakeEntra


class FakeIdentityEndpoint:
    def __init__(self, entra: FakeEntra, *, client_id: str, principal_id: str = "") -> None:
        self.entra = entra
        self.client_id = client_id  # the user-assigned identity's client ID (OBO_MANAGED_IDENTITY_CLIENT_ID)
        self.principal_id = principal_id or FakeEntra.service_principal_oid(client_id)
        self.header = secrets.token_urlsafe(16)  # what IDENTITY_HEADER is set to
        self.lifetime = 86400
        self.fail_status: int | None = None  # answer every request with this status (an unavailable endpoint)
        self._lock = threading.Lock()
        self.requests: list[dict[str, str]] = []  # query parameters of each request
        self.issued: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = fake._answer(self.path, self.headers.get("X-IDENTITY-HEADER"))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def endpoint(self) -> str:
        """What IDENTITY_ENDPOINT is set to."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def _answer(self, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
        params = dict(parse_qsl(urlsplit(path).query))
        with self._lock:
            self.requests.append(params)
        if self.fail_status is not None:
            return self.fail_status, {"statusCode": self.fail_status, "message": "injected failure"}
        if header != self.header:
            return 401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}
        if params.get("api-version") != "2019-08-01" or params.get("client_id") != self.client_id:
            return 400, {"statusCode": 400, "message": "Unable to load the proper Managed Identity."}
        now = int(time.time())
        resource = params.get("resource", "")
        token = self.entra.sign({
            "aud": resource, "iss": self.entra.issuer, "sub": self.principal_id, "oid": self.principal_id,
            "tid": self.entra.tenant_id, "azp": self.client_id, "idtyp": "app", "iat": now, "nbf": now,
            "exp": now + self.lifetime,
        })
        with self._lock:
            self.issued.append(token)
        return 200, {"access_token": token, "expires_on": str(now + self.lifetime), "resource": resource,
                     "token_type": "Bearer", "client_id": self.client_id}

    def __enter__(self) -> FakeIdentityEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
