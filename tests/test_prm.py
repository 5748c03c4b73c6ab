"""Protected Resource Metadata documents (RFC 9728) and bearer challenges (RFC 6750)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.entra import prm

BASE = "https://mcp.contoso.com"
AUTHORITY = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
SCOPE = "api://11111111-2222-3333-4444-555555555555/user_impersonation"

# RFC 7235 auth-param with a quoted-string value (no escapes: the builder never needs them).
_PARAM = r'[A-Za-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_CHALLENGE = re.compile(rf"^Bearer {_PARAM}(, {_PARAM})*$")


def parse(challenge: str) -> dict[str, str]:
    assert _CHALLENGE.match(challenge), challenge
    return dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', challenge))


def test_urls() -> None:
    assert prm.resource_url(BASE) == "https://mcp.contoso.com/mcp"
    assert prm.metadata_url(BASE) == "https://mcp.contoso.com/.well-known/oauth-protected-resource/mcp"
    assert prm.metadata_url("http://localhost:7071") == "http://localhost:7071/.well-known/oauth-protected-resource/mcp"


def test_document_shape() -> None:
    document = prm.protected_resource_metadata(
        resource=prm.resource_url(BASE), authorization_server=AUTHORITY, scopes=(SCOPE,), resource_name="My MCP"
    )
    assert document == {
        "resource": "https://mcp.contoso.com/mcp",
        "authorization_servers": [AUTHORITY],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "My MCP",
    }


def test_document_with_documentation_and_several_scopes() -> None:
    document = prm.protected_resource_metadata(
        resource=BASE, authorization_server=AUTHORITY, scopes=iter([SCOPE, SCOPE + "2"]), resource_name="x",
        documentation="https://contoso.com/docs",
    )
    assert document["scopes_supported"] == [SCOPE, SCOPE + "2"]
    assert document["resource_documentation"] == "https://contoso.com/docs"
    assert document["resource"] == BASE


def test_bare_challenge() -> None:
    challenge = prm.bearer_challenge(resource_metadata=prm.metadata_url(BASE), scopes=[SCOPE])
    assert challenge == (
        'Bearer resource_metadata="https://mcp.contoso.com/.well-known/oauth-protected-resource/mcp", '
        f'scope="{SCOPE}"'
    )
    assert "error" not in parse(challenge)


def test_challenge_without_scopes_omits_the_scope_param() -> None:
    assert prm.bearer_challenge(resource_metadata="https://x/m") == 'Bearer resource_metadata="https://x/m"'


def test_challenge_with_error_and_several_scopes() -> None:
    challenge = prm.bearer_challenge(
        resource_metadata="https://x/m", scopes=[SCOPE, "api://c/Files.Read"], error="insufficient_scope",
        error_description="this tool needs scope Files.Read",
    )
    params = parse(challenge)
    assert params == {
        "resource_metadata": "https://x/m",
        "scope": f"{SCOPE} api://c/Files.Read",
        "error": "insufficient_scope",
        "error_description": "this tool needs scope Files.Read",
    }
    assert list(params) == ["resource_metadata", "scope", "error", "error_description"]


def test_claims_challenge() -> None:
    claims = "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"
    params = parse(prm.bearer_challenge(resource_metadata="https://x/m", error="insufficient_claims", claims=claims))
    assert params["claims"] == claims
    assert params["error"] == "insufficient_claims"


@pytest.mark.parametrize(
    "hostile",
    [
        'x", error="invalid_token',
        "x\r\nSet-Cookie: a=b",
        "x\nLocation: https://evil",
        'x\\", a="b',
        "x\x00y\x7f",
        "caf\u00e9 \u2028 \U0001f600",
    ],
)
def test_no_injection_through_any_value(hostile: str) -> None:
    challenge = prm.bearer_challenge(
        resource_metadata="https://x/m" + hostile, scopes=[hostile], error=hostile,
        error_description=hostile, claims=hostile,
    )
    assert "\r" not in challenge and "\n" not in challenge and "\x00" not in challenge
    assert challenge.isascii()
    params = parse(challenge)
    # Each value stays inside its own quotes: no parameter can be added or overridden.
    assert set(params) == {"resource_metadata", "scope", "error", "error_description", "claims"}
    assert challenge.count('"') == 10


@given(st.text(), st.lists(st.text(max_size=30), max_size=3), st.text())
def test_challenge_is_always_one_well_formed_header(metadata: str, scopes: list[str], description: str) -> None:
    challenge = prm.bearer_challenge(resource_metadata=metadata, scopes=scopes, error="invalid_token",
                                     error_description=description)
    params = parse(challenge)
    assert params["error"] == "invalid_token"
    assert challenge.isascii() and "\n" not in challenge and "\r" not in challenge
