"""What a tool (or prompt, or resource) raises to end a call: failures shown to the model, and auth challenges.

A leaf module (standard library only), so that ``shared.features.context`` can raise ``ToolError`` and
``shared.downstream.obo``/``shared.graph`` can raise challenges without importing the tool registry.
Forkers import these from ``shared.tools``, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "AuthorizationChallenge",
    "ClaimsChallengeError",
    "InsufficientScopeError",
    "ToolError",
    "UrlElicitationRequired",
]


class ToolError(Exception):
    """Raise this from a tool to report a failure to the model; the message is shown to it verbatim.

    Anything else a tool raises is logged with its traceback and reported only as an internal error.
    """


class UrlElicitationRequired(ToolError):
    """The user must visit ``url`` (consent, sign-in to a third party, ...) before the tool can run.

    With clients that can do URL-mode elicitation (2026-07-28 multi round-trip requests) the
    engine asks the client to open the URL and retry; otherwise it becomes an ``isError``
    result whose text carries the message and the URL.
    """

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.message = message
        super().__init__(f"{message} Open this URL, then try again: {url}")


class AuthorizationChallenge(Exception):
    """Base of the signals a tool raises to make the HTTP layer challenge the caller.

    They are not tool failures: ``ToolRegistry.call`` and the protocol engine let them propagate so
    the pipeline can answer with the right status and ``WWW-Authenticate`` header.
    """

    # What was being called (method, name), filled in by the protocol engine for the request log.
    rpc: Mapping[str, str] | None = None


class InsufficientScopeError(AuthorizationChallenge):
    """The caller lacks scopes or app roles the tool needs (the pipeline answers HTTP 403 insufficient_scope).

    ``scopes`` and ``roles`` hold what is *missing*. Raised by ``ToolRegistry.call`` before arguments are
    looked at; a tool body may also raise it when it decides at run time that it needs more (step-up), and
    it then propagates out of ``call`` unchanged.
    """

    def __init__(self, scopes: Iterable[str] = (), roles: Iterable[str] = (), message: str | None = None) -> None:
        self.scopes = tuple(scopes)
        self.roles = tuple(roles)
        if message is None:
            parts = []
            if self.scopes:
                parts.append(f"missing scope(s): {' '.join(self.scopes)}")
            if self.roles:
                parts.append(f"missing app role(s): {' '.join(self.roles)}")
            message = "Insufficient scope: " + ("; ".join(parts) or "more permissions are required")
        super().__init__(message)


class ClaimsChallengeError(AuthorizationChallenge):
    """The caller must sign in again and satisfy ``claims`` (Conditional Access, MFA, ...).

    ``claims`` is the claims-challenge JSON, base64-encoded as it goes into the
    ``WWW-Authenticate: Bearer error="insufficient_claims", claims="..."`` header (HTTP 401).
    """

    def __init__(self, claims: str, message: str = "Additional sign-in requirements must be satisfied") -> None:
        self.claims = claims
        super().__init__(message)
