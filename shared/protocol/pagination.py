"""Pagination of MCP list results: slicing a list into pages and the opaque cursors between them.

Pure functions. A cursor is base64url JSON of the list's kind and an offset: clients must treat it as
opaque, and a cursor made for one list is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.protocol.jsonrpc import INVALID_PARAMS, RpcError

DEFAULT_PAGE_SIZE = 100


def page(items: list[dict[str, Any]], key: str, cursor: Any, page_size: int) -> dict[str, Any]:
    """One page of a list result under ``key``, with ``nextCursor`` when more follow."""
    start = 0
    if cursor is not None:
        start = decode_cursor(cursor, key)
        if start > len(items):
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor")
    end = start + page_size
    result: dict[str, Any] = {key: items[start:end]}
    if end < len(items):
        result["nextCursor"] = encode_cursor(key, end)
    return result


def encode_cursor(kind: str, offset: int) -> str:
    raw = json.dumps({"k": kind, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: Any, kind: str) -> int:
    """The offset a cursor for list ``kind`` points at; any other value is an invalid-params error."""
    try:
        if not isinstance(cursor, str) or len(cursor) > 200:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["o"]
        if data["k"] != kind or type(offset) is not int or offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor") from None
