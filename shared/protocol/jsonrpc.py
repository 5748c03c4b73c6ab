"""JSON-RPC 2.0 as MCP uses it: the error codes, the error exception, and how messages are encoded.

Shared by the transport (``shared.protocol``), which turns an :class:`RpcError` into a response, and by
the method implementations, which raise it. Pure values: no HTTP, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022
# Resource not found before 2026-07-28 (2026-07-28 uses -32602 and forbids -32002).
LEGACY_RESOURCE_NOT_FOUND = -32002


class RpcError(Exception):
    """A JSON-RPC error, with the HTTP status the transport prescribes for it."""

    def __init__(self, code: int, message: str, *, data: Any = None, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_body(code: int, message: str) -> bytes:
    """A JSON-RPC error without an id, for refusals made before the body is read."""
    return dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes for a JSON-RPC message."""
    # default=str: a tool returning an odd value must never turn into a 500. ensure_ascii: a lone
    # surrogate echoed from the request (an id, a name) has no UTF-8 form but does have a JSON escape.
    return json.dumps(payload, separators=(",", ":"), default=str).encode("ascii")
