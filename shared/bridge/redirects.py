"""Redirect URI matching: exact, except the port of a loopback URI (RFC 8252 §7.3, and Entra's own rule).

A native client listens on a port it picks at sign-in time, so a registered ``http://127.0.0.1/callback``
admits ``http://127.0.0.1:53127/callback``. Everything else (scheme, host, path, query) must be equal, and
https redirect URIs must be byte-for-byte equal.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A loopback redirect URI split into host, port and the rest, on the raw string: URL parsers drop tabs and
# newlines and an empty "?", so comparing parsed parts would call unequal strings equal.
_LOOPBACK = re.compile(r"http://(localhost|127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?].*)?", re.DOTALL)
MAX_REDIRECT_URI_LENGTH = 2000


def is_loopback_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def without_loopback_port(uri: str) -> str:
    """``uri`` with the port of a loopback URI removed (the form Entra and RFC 8252 compare)."""
    match = _LOOPBACK.fullmatch(uri)
    return f"http://{match.group(1)}{match.group(3) or ''}" if match else uri


def redirect_matches(registered: str, requested: str) -> bool:
    """Whether ``requested`` is the ``registered`` redirect URI (loopback: on any port)."""
    if (len(requested) > MAX_REDIRECT_URI_LENGTH or "#" in requested or not requested.isprintable()
            or any(ch.isspace() for ch in requested)):
        return False
    if requested == registered:
        return True
    if not is_loopback_redirect(registered):
        return False
    match = _LOOPBACK.fullmatch(requested)
    if match is None:
        return False
    port = match.group(2)
    if port is not None and not 0 < int(port) < 65536:
        return False
    return f"http://{match.group(1)}{match.group(3) or ''}" == registered


def is_deliverable(requested: str, registered: tuple[str, ...] | list[str]) -> bool:
    """Whether any of ``registered`` admits ``requested``."""
    return any(redirect_matches(uri, requested) for uri in registered)
