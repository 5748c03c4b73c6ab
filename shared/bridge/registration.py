"""Dynamic client registration (RFC 7591) without a store: the ``client_id`` is a signed description of the client.

Deprecated by MCP 2026-07-28 in favour of metadata documents, but it is what mcp-remote and the MCP Inspector
use. The returned ``client_id`` carries the registered redirect URIs and name, sealed with the bridge's key, so
any instance can read it back and nobody can alter it. Only redirect URIs the bridge delivers to (
``MCP_BRIDGE_REDIRECT_URIS``) can be registered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.bridge.clients import Client, ClientError, display_name
from shared.bridge.signing import Signer

CLIENT_ID_PREFIX = "mcp-dcr."
MAX_REDIRECT_URIS = 10
_SUPPORTED_GRANTS = frozenset({"authorization_code", "refresh_token"})


class RegistrationError(Exception):
    """RFC 7591 §3.2.2: ``error`` is ``invalid_redirect_uri`` or ``invalid_client_metadata``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def is_registered_id(client_id: str) -> bool:
    return client_id.startswith(CLIENT_ID_PREFIX)


class Registrations:
    def __init__(self, signer: Signer, *, deliverable: Callable[[str], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._deliverable = deliverable
        self._clock = clock

    def register(self, metadata: Any) -> dict[str, Any]:
        """Validate a registration request and return the RFC 7591 §3.2.1 response body."""
        if not isinstance(metadata, dict):
            raise RegistrationError("invalid_client_metadata", "the request body must be a JSON object")
        redirect_uris = metadata.get("redirect_uris")
        if (not isinstance(redirect_uris, list) or not redirect_uris or len(redirect_uris) > MAX_REDIRECT_URIS
                or not all(isinstance(u, str) for u in redirect_uris)):
            raise RegistrationError("invalid_redirect_uri", f"redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs")
        undeliverable = [u for u in redirect_uris if not self._deliverable(u)]
        if undeliverable:
            raise RegistrationError(
                "invalid_redirect_uri",
                f"redirect URI {undeliverable[0][:200]!r} is not one this server returns sign-ins to "
                "(MCP_BRIDGE_REDIRECT_URIS); loopback clients may use any port",
            )
        grants = metadata.get("grant_types", ["authorization_code"])
        if (not isinstance(grants, list) or not all(isinstance(g, str) for g in grants)
                or not set(grants) <= _SUPPORTED_GRANTS or "authorization_code" not in grants):
            raise RegistrationError("invalid_client_metadata",
                                    "grant_types must be authorization_code, optionally with refresh_token")
        response_types = metadata.get("response_types", ["code"])
        if response_types != ["code"]:
            raise RegistrationError("invalid_client_metadata", "response_types must be [\"code\"]")
        name = display_name(metadata.get("client_name")) or "Unnamed client"
        issued = int(self._clock())
        client_id = CLIENT_ID_PREFIX + self._signer.seal({"r": redirect_uris, "n": name, "t": issued})
        # Public clients only: a requested secret-based method is replaced, as RFC 7591 §3.2.1 allows.
        return {
            "client_id": client_id,
            "client_id_issued_at": issued,
            "client_name": name,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    def resolve(self, client_id: str) -> Client:
        payload = self._signer.unseal(client_id[len(CLIENT_ID_PREFIX):])
        if (not isinstance(payload, dict) or not isinstance(payload.get("r"), list)
                or not all(isinstance(u, str) for u in payload["r"]) or not isinstance(payload.get("n"), str)):
            # Tampered, or sealed with another key (another deployment, or a restart without
            # MCP_REQUEST_STATE_KEY): clients react to invalid_client by registering again.
            raise ClientError("client_id is not one this server registered; register again")
        return Client(client_id=client_id, name=payload["n"], redirect_uris=tuple(payload["r"]), kind="registered")
