"""Attacker-chosen text made safe for a log line.

A refused token's ``kid`` or ``alg``, a client ID, a claim value: whatever the caller chose must not be able to
pass for a field of the log line it lands in (``... unknown kid x status=200 oid=admin``), start a new line, or
blow the line up. :func:`log_value` percent-encodes everything outside ``[A-Za-z0-9._~-]`` (RFC 3986's unreserved
characters), so a logged value never contains a space, ``=``, a quote, a comma or a control character, and bounds
its length. The encoding is lossless (``urllib.parse.unquote`` gives the value back, up to the cut-off), so an
operator can still see exactly what was sent.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["DEFAULT_LIMIT", "log_value"]

DEFAULT_LIMIT = 64
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")
_TRUNCATED = "..."


def log_value(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as a log-safe token: at most ``limit`` characters (plus ``...`` when cut), only ``[A-Za-z0-9._~%-]``.

    ``None`` is ``-``; other non-strings are logged as their ``repr``, encoded the same way.
    """
    if value is None:
        return "-"
    text = value if isinstance(value, str) else repr(value)
    cut = len(text) > limit
    text = text[:limit]  # never encode more than can be shown
    if not cut and _UNRESERVED.fullmatch(text):
        return text  # the usual case (a GUID, a base64url kid): nothing to encode
    # surrogatepass: a lone surrogate from a JSON "\ud800" escape is encoded, not an exception.
    encoded = quote(text.encode("utf-8", "surrogatepass"), safe="")
    if len(encoded) > limit:
        encoded = encoded[:limit]
        escape = encoded.find("%", len(encoded) - 2)
        if escape != -1:
            encoded = encoded[:escape]  # never half an escape
        cut = True
    return encoded + (_TRUNCATED if cut else "")
