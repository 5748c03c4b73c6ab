"""What a tool, prompt or resource function sees: the verified caller, the request and downstream auth.

A leaf module (it imports only ``shared.features.errors``, ``shared.mrtr`` and ``shared.features.versions``), so the
registries (``shared.tools``, ``shared.prompts``, ``shared.resources``) and the engine can all depend on
it without depending on each other. Forkers import these from ``shared.tools``, which re-exports them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.features.errors import ToolError
from shared.features.mrtr import InputRequest, client_supports
from shared.features.versions import MODERN_VERSIONS

__all__ = ["NO_DOWNSTREAM_MESSAGE", "Caller", "DownstreamAuth", "RequestInfo", "ToolContext"]

# The logger name predates this module (it lived in shared.tools): operators' filters keep working.
_LOG = logging.getLogger("mcp.tools")
NO_DOWNSTREAM_MESSAGE = (
    "This server has no on-behalf-of credential configured, so this tool cannot call other APIs on your behalf."
)


class Caller(Protocol):
    """The verified caller: a signed-in user (delegated token) or an application calling as itself (app-only token).

    ``shared.entra.tokens.Principal`` satisfies this structurally. An application (a daemon, a Foundry agent, an Entra
    agent identity) has no scopes, no name and no user: it is admitted by an app role (``MCP_APP_ROLES``), its
    ``oid`` is its service principal's object ID and ``client_app_id`` its application (client) ID. Tools that act
    for a person should check ``is_app``; on-behalf-of (``ToolContext.downstream_token``) refuses applications.
    """

    @property
    def claims(self) -> Mapping[str, Any]: ...

    @property
    def scopes(self) -> frozenset[str]:
        """Delegated scopes, short names (``"user_impersonation"``); empty for app-only tokens."""
        ...

    @property
    def roles(self) -> frozenset[str]:
        """App roles: for an application, those granted to it; for a user, the user's own app-role assignments."""
        ...

    @property
    def oid(self) -> str:
        """The caller's Entra object ID (``oid``): the user's, or the application's service principal's."""
        ...

    @property
    def client_app_id(self) -> str:
        """The client application that obtained the token (``azp``, or ``appid`` in v1 tokens).

        For an application calling as itself, this is the application itself.
        """
        ...

    @property
    def kind(self) -> Literal["user", "app"]:
        """``"user"`` for a signed-in user (delegated token), ``"app"`` for an application calling as itself."""
        ...

    @property
    def is_app(self) -> bool:
        """True when ``kind`` is ``"app"``: there is no signed-in user behind this call."""
        ...


class DownstreamAuth(Protocol):
    """Issues tokens for downstream APIs (on-behalf-of). Tools never see the caller's own token.

    Optional capability: ``async def get_token_async(self, *scopes: str) -> str``. An implementation that
    has it (``shared.downstream.obo.UserDownstream`` does) is awaited by ``ToolContext.downstream_token_async``;
    otherwise ``get_token`` runs in a worker thread. It is not part of the protocol so that a minimal
    implementation (a test double, a fixed-token stub) only needs ``get_token``.
    """

    def get_token(self, *scopes: str) -> str: ...


@dataclass(frozen=True)
class RequestInfo:
    """What the client told us about itself; the mappings may be empty."""

    protocol_version: str
    client_info: Mapping[str, Any] = field(default_factory=dict)
    client_capabilities: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    """Injected into any tool parameter annotated ``ToolContext``; never part of the input schema."""

    caller: Caller
    request: RequestInfo
    downstream: DownstreamAuth | None = None
    log: logging.Logger = _LOG
    # Multi round-trip requests (2026-07-28, see shared.mrtr): the client's answers to the previous
    # round's InputRequired, by key, and the state that round saved (verified by the engine).
    input_responses: Mapping[str, Any] = field(default_factory=dict)
    state: Any = None
    # The client's per-request minimum log level (2026-07-28 io.modelcontextprotocol/logLevel), or None.
    log_level: str | None = None

    def can_ask(self, request: InputRequest) -> bool:
        """Whether raising InputRequired with ``request`` is allowed: 2026-07-28 and a declared capability."""
        return self.request.protocol_version in MODERN_VERSIONS and client_supports(
            self.request.client_capabilities, request.capability
        )

    def downstream_token(self, *scopes: str) -> str:
        """A token for a downstream API, e.g. ``ctx.downstream_token("https://graph.microsoft.com/User.Read")``.

        Raises ToolError (shown to the model) when the server has no on-behalf-of credential, and, with
        on-behalf-of, when the caller is an application (``ctx.caller.is_app``): there is no user to act for.
        """
        if self.downstream is None:
            raise ToolError(NO_DOWNSTREAM_MESSAGE)
        return self.downstream.get_token(*scopes)

    async def downstream_token_async(self, *scopes: str) -> str:
        """:meth:`downstream_token` for async tools: the token exchange never blocks the event loop.

        Raises ToolError (shown to the model) like :meth:`downstream_token`.
        """
        downstream = self.downstream
        if downstream is None:
            raise ToolError(NO_DOWNSTREAM_MESSAGE)
        get_token_async = getattr(downstream, "get_token_async", None)
        if get_token_async is not None:
            token: str = await get_token_async(*scopes)
            return token
        # Imported here, like in shared.features.callables.run_awaitable: asyncio costs ~15 ms at start-up.
        import asyncio

        return await asyncio.to_thread(downstream.get_token, *scopes)
