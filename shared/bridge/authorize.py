"""The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636), checked before anything is shown or sent.

Order matters: until the client is known and the redirect URI is both the client's and one the bridge
delivers to (``MCP_BRIDGE_REDIRECT_URIS``), nothing may be redirected anywhere (RFC 6749 §4.1.2.1); after that,
errors go back to the client as ``error`` query parameters. A request that passes is forwarded to Entra with
the bridge's client ID and callback, full scope names, no ``resource``, and the bindings of
``shared.bridge.binding`` in place of the client's state and challenge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from shared.bridge.clients import Client, ClientError
from shared.bridge.redirects import is_deliverable
from shared.bridge.scopes import ScopeError, ScopeMap

# RFC 7636 §4.2: BASE64URL(SHA-256(verifier)) is 43 characters; the grammar allows 43 to 128.
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
MAX_STATE_LENGTH = 2048

# What the consent form carries back (and nothing else is forwarded).
AUTHORIZE_PARAMETERS = ("response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge",
                        "code_challenge_method", "resource", "prompt")
# OIDC prompt values passed on to Entra (switching accounts, forcing a sign-in); anything else is dropped.
PROMPTS = frozenset({"login", "select_account", "consent", "none"})


class NoRedirect(Exception):
    """The request cannot be answered by a redirect: show ``message`` on an error page."""

    def __init__(self, message: str, *, unknown_client: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unknown_client = unknown_client


class RedirectError(Exception):
    """An error the client learns from its own redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.location = with_query(redirect_uri, {"error": error, "error_description": description,
                                                  **({"state": state} if state is not None else {})})


@dataclass(frozen=True)
class Authorization:
    client: Client
    redirect_uri: str
    state: str | None
    code_challenge: str
    scopes: tuple[str, ...]
    prompt: str | None = None


def entra_authorize_url(endpoint: str, *, client_id: str, callback_uri: str, scopes: tuple[str, ...], state: str,
                        code_challenge: str, prompt: str | None = None) -> str:
    """Entra's authorize URL for one bridged sign-in: the bridge's client and callback, no ``resource``."""
    return endpoint + "?" + urlencode({
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": callback_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "response_mode": "query",
        **({"prompt": prompt} if prompt else {}),
    })


def check_authorization(
    params: Mapping[str, str],
    *,
    resolve_client: Callable[[str], Client],
    bridge_redirect_uris: tuple[str, ...],
    resource: str,
    scopes: ScopeMap,
) -> Authorization:
    client_id = params.get("client_id", "")
    if not client_id:
        raise NoRedirect("The request does not say which app is signing in (client_id is missing).")
    try:
        client = resolve_client(client_id)
    except ClientError as exc:
        raise NoRedirect(f"This server does not know the app that started the sign-in: {exc.description}.",
                         unknown_client=True) from None
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise NoRedirect("The request has no redirect_uri.")
    if not client.allows_redirect(redirect_uri):
        raise NoRedirect("The redirect_uri is not one of the app's registered redirect URIs.")
    if not is_deliverable(redirect_uri, bridge_redirect_uris):
        raise NoRedirect("The redirect_uri is not one this server returns sign-ins to (MCP_BRIDGE_REDIRECT_URIS).")

    state = params.get("state")
    if state is not None and (len(state) > MAX_STATE_LENGTH or not state.isprintable()):
        raise NoRedirect("The state parameter is too long or contains control characters.")

    def refuse(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, state, error, description)

    if params.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code")
    challenge = params.get("code_challenge", "")
    if not challenge:
        raise refuse("invalid_request", "a PKCE code_challenge is required")
    if params.get("code_challenge_method") != "S256":
        raise refuse("invalid_request", "code_challenge_method must be S256")
    if not _CHALLENGE.fullmatch(challenge):
        raise refuse("invalid_request", "code_challenge is malformed")
    requested_resource = params.get("resource")
    if requested_resource is not None and requested_resource != resource:
        raise refuse("invalid_target", f"resource must be {resource}")
    try:
        entra_scopes = scopes.to_entra(params.get("scope"))
    except ScopeError as exc:
        raise refuse("invalid_scope", str(exc)) from None
    prompt = params.get("prompt")
    return Authorization(client=client, redirect_uri=redirect_uri, state=state, code_challenge=challenge,
                         scopes=entra_scopes, prompt=prompt if prompt in PROMPTS else None)


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` added to any query it already has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
