"""The bridge's RFC 8414 authorization server metadata and its routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
CALLBACK_PATH = "/oauth/entra-callback"  # Entra's redirect URI for the bridge; unlike any MCP client's redirect URI
REGISTER_PATH = "/oauth/register"


def authorization_server_metadata(issuer: str, *, scopes: Iterable[str], registration: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        # Byte-equal to the origin the Protected Resource Metadata names (RFC 8414 §3.3).
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [*scopes, "offline_access"],
        "client_id_metadata_document_supported": True,
        # No authorization_response_iss_parameter_supported: Entra returns the code without RFC 9207 `iss`,
        # and clients that see it advertised would refuse the response.
    }
    if registration:
        document["registration_endpoint"] = issuer + REGISTER_PATH
    return document
