"""Redirect URI matching: exact, except the port of a loopback URI (RFC 8252 §7.3, and Entra's own rule).

A native client listens on a port it picks at sign-in time, so a registered ``http://127.0.0.1/callback``
admits ``http://127.0.0.1:53127/callback``. Everything else (scheme, host, path, query) must be equal, and
https redirect URIs must be byte-for-byte equal.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# host[:port] with nothing else: no userinfo, no stray characters a parser might read differently.
_NETLOC = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")
MAX_REDIRECT_URI_LENGTH = 2000


def is_loopback_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def redirect_matches(registered: str, requested: str) -> bool:
    """Whether ``requested`` is the ``registered`` redirect URI (loopback: on any port)."""
    if len(requested) > MAX_REDIRECT_URI_LENGTH or "#" in requested:
        return False
    if requested == registered:
        return True
    if not (is_loopback_redirect(registered) and requested.startswith("http://")):
        return False
    want, got = urlsplit(registered), urlsplit(requested)
    if not _NETLOC.fullmatch(got.netloc):
        return False
    try:
        port = got.port
    except ValueError:
        return False
    return (port is None or 0 < port < 65536) and got.hostname == want.hostname and (
        got.path, got.query) == (want.path, want.query)


def is_deliverable(requested: str, registered: tuple[str, ...] | list[str]) -> bool:
    """Whether any of ``registered`` admits ``requested``."""
    return any(redirect_matches(uri, requested) for uri in registered)
