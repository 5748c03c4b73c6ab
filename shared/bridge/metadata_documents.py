"""Client ID metadata documents (CIMD): a client's ``client_id`` is the HTTPS URL of a JSON document about it.

MCP 2026-07-28 prefers this to dynamic registration; VS Code's is ``https://vscode.dev/oauth/client-metadata.json``.
The bridge fetches a document only from hosts on ``MCP_BRIDGE_CLIENT_METADATA_HOSTS`` (an open fetcher would
let anyone make this app request any URL), over verified HTTPS, without following redirects, with a size and
time limit, and keeps it for a few minutes.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from shared.bridge.clients import Client, ClientError, display_name

log = logging.getLogger("mcp.bridge")

MAX_DOCUMENT_BYTES = 16 * 1024
MAX_URL_LENGTH = 1024
MAX_REDIRECT_URIS = 20
FETCH_TIMEOUT_SECONDS = 5.0
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 64

Fetch = Callable[[str], bytes]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx then surfaces as an HTTPError: the document must be at the client_id URL itself


def fetch_https(url: str) -> bytes:
    """GET ``url`` with verified TLS (the default trust store; ``SSL_CERT_FILE`` for a private CA)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context()), _NoRedirects()
    )
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
    with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        # The socket timeout bounds each read, not the whole body: a host dripping a byte at a time is cut off.
        body = b""
        while len(body) <= MAX_DOCUMENT_BYTES:
            if time.monotonic() > deadline:
                raise OSError("document took too long")
            chunk: bytes = response.read1(4096)
            if not chunk:
                break
            body += chunk
    if len(body) > MAX_DOCUMENT_BYTES:
        raise OSError("document too large")
    return body


def is_metadata_document_id(client_id: str) -> bool:
    return client_id.startswith("https://")


class MetadataDocuments:
    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        fetch: Fetch = fetch_https,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowed = frozenset(h.lower() for h in allowed_hosts)
        self._fetch = fetch
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Client]] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, client_id: str) -> Client:
        self._check_url(client_id)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(client_id)
            if cached is not None and cached[0] > now:
                self._cache.move_to_end(client_id)
                return cached[1]
        try:
            body = self._fetch(client_id)
        except (OSError, urllib.error.URLError, ValueError, http.client.HTTPException) as exc:
            log.warning("Client metadata document unavailable from %s: %s", urlsplit(client_id).netloc,
                        type(exc).__name__)
            raise ClientError("the client's metadata document could not be fetched") from None
        client = _parse(client_id, body)
        with self._lock:
            self._cache[client_id] = (now + CACHE_SECONDS, client)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return client

    def _check_url(self, client_id: str) -> None:
        if len(client_id) > MAX_URL_LENGTH or not client_id.isascii() or not client_id.isprintable():
            raise ClientError("client_id is not a valid metadata document URL")
        parts = urlsplit(client_id)
        # The CIMD draft: https, a path, no fragment, no credentials, no dot segments.
        if (parts.scheme != "https" or not parts.hostname or parts.fragment or "@" in parts.netloc
                or parts.path in ("", "/") or "/./" in parts.path + "/" or "/../" in parts.path + "/"
                or " " in client_id or "\\" in client_id):
            raise ClientError("client_id is not a valid metadata document URL")
        netloc = parts.netloc.lower()
        bare = netloc[:-4] if netloc.endswith(":443") else netloc
        if bare not in self._allowed:
            raise ClientError(f"client metadata documents from {bare} are not accepted by this server "
                              "(MCP_BRIDGE_CLIENT_METADATA_HOSTS)")


def _parse(client_id: str, body: bytes) -> Client:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ClientError("the client's metadata document is not JSON") from None
    if not isinstance(document, dict):
        raise ClientError("the client's metadata document is not a JSON object")
    if document.get("client_id") != client_id:
        raise ClientError("the client's metadata document names another client_id")
    redirect_uris = document.get("redirect_uris")
    if (not isinstance(redirect_uris, list) or not redirect_uris or len(redirect_uris) > MAX_REDIRECT_URIS
            or not all(isinstance(u, str) and u for u in redirect_uris)):
        raise ClientError("the client's metadata document has no valid redirect_uris")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise ClientError(f"token_endpoint_auth_method {str(method)[:40]!r} is not supported (public clients only)")
    name = display_name(document.get("client_name")) or urlsplit(client_id).netloc
    return Client(client_id=client_id, name=name, redirect_uris=tuple(redirect_uris), kind="metadata_document")
