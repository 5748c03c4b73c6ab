"""One MCP request as a method implementation sees it, after the transport has validated it.

This is the contract between the dispatcher (``shared.protocol.engine``) and the methods (``shared.protocol.methods``):
the transport builds a :class:`Request` from a checked JSON-RPC message and its headers; a method
reads only this, never HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.features.context import Caller, DownstreamAuth, RequestInfo, ToolContext
from shared.features.versions import MODERN_VERSIONS

# The syslog severities MCP uses, lowest first (logging/setLevel and the 2026-07-28 _meta log level).
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@dataclass(frozen=True)
class Request:
    """One JSON-RPC request as the handlers see it."""

    method: str
    params: Mapping[str, Any]
    info: RequestInfo
    caller: Caller
    downstream: DownstreamAuth | None
    # One of LOG_LEVELS when a 2026-07-28 client asked for one in _meta.
    log_level: str | None = None

    @property
    def modern(self) -> bool:
        return self.info.protocol_version in MODERN_VERSIONS

    def context(self, input_responses: Mapping[str, Any] | None = None, state: Any = None) -> ToolContext:
        return ToolContext(caller=self.caller, request=self.info, downstream=self.downstream,
                           input_responses=input_responses or {}, state=state, log_level=self.log_level)
