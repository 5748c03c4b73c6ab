"""The tool registry and everything a tools file needs: the public face of ``shared.features.tools``.

Forkers import from here (the README shows these paths); the code lives in its layer's package.
"""

from shared.features.tools import (
    AuthorizationChallenge,
    Caller,
    ClaimsChallengeError,
    DownstreamAuth,
    InsufficientScopeError,
    Param,
    RequestInfo,
    Tool,
    ToolAnnotations,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    UnknownToolError,
    UrlElicitationRequired,
)

__all__ = [
    "AuthorizationChallenge",
    "Caller",
    "ClaimsChallengeError",
    "DownstreamAuth",
    "InsufficientScopeError",
    "Param",
    "RequestInfo",
    "Tool",
    "ToolAnnotations",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "UnknownToolError",
    "UrlElicitationRequired",
]
