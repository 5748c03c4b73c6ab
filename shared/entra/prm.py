"""OAuth 2.0 Protected Resource Metadata (RFC 9728) and RFC 6750 bearer challenges."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MCP_PATH = "/mcp"
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def resource_url(public_base: str) -> str:
    """The MCP endpoint URL exactly as clients use it: the PRM ``resource``."""
    return public_base + MCP_PATH


def metadata_url(public_base: str) -> str:
    """The path-inserted PRM URL for the MCP endpoint (RFC 9728 §3.1)."""
    return public_base + WELL_KNOWN + MCP_PATH


def protected_resource_metadata(
    *,
    resource: str,
    authorization_server: str,
    scopes: Iterable[str],
    resource_name: str,
    documentation: str | None = None,
) -> dict[str, Any]:
    """The RFC 9728 document. ``scopes`` are the full delegated scopes a user's client requests.

    Never app roles (MCP_APP_ROLES): ``scopes_supported`` lists what a client may put in ``scope``, while an
    application calling as itself requests ``<app ID URI>/.default`` and holds its roles by assignment.
    """
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [authorization_server],
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": resource_name,
    }
    if documentation:
        document["resource_documentation"] = documentation
    return document


_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def bearer_challenge(
    *,
    resource_metadata: str,
    scopes: Iterable[str] = (),
    error: str | None = None,
    error_description: str | None = None,
    claims: str | None = None,
) -> str:
    """Build a ``WWW-Authenticate: Bearer`` value (RFC 6750 §3, RFC 9728 §5.1)."""
    params = [("resource_metadata", resource_metadata)]
    scope = " ".join(scopes)
    if scope:
        params.append(("scope", scope))
    if error:
        params.append(("error", error))
    if error_description:
        params.append(("error_description", error_description))
    if claims:
        params.append(("claims", claims))
    # Quoted-string values: drop anything that could break out of the quotes.
    return "Bearer " + ", ".join(f'{name}="{_UNSAFE.sub("", value)}"' for name, value in params)
