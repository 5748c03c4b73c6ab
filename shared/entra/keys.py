"""A focused cache of the tenant's token-signing keys (JWKS).

Behaviour follows Microsoft's guidance for Entra keys:

* keys are discovered from the tenant's OpenID configuration and cached for ``lifetime``;
* an unknown ``kid`` triggers a refresh (keys roll over without notice), but at most once
  per ``refresh_cooldown``, counted from the last fetch attempt, so a flood of forged
  ``kid`` values cannot turn this server into a traffic amplifier;
* one fetch is in flight at a time, and threads that waited for it reuse its result;
* when a refresh fails, the last good keys stay in use.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from shared.entra.logsafe import log_value

log = logging.getLogger("mcp.auth.jwks")

FetchJson = Callable[[str], Mapping[str, Any]]

MAX_DOCUMENT_BYTES = 512 * 1024
MAX_KEYS = 64


class KeysUnavailableError(Exception):
    """No signing keys could be obtained (cold start with the key endpoint down)."""


class KeyFetchError(Exception):
    """A discovery or key document could not be fetched or was malformed."""


@dataclass(frozen=True)
class _KeySet:
    keys: Mapping[str, RSAPublicKey]
    fetched_at: float


class JwksCache:
    def __init__(
        self,
        openid_configuration_url: str,
        *,
        lifetime: float = 12 * 3600,
        refresh_cooldown: float = 300,
        fetch_json: FetchJson | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config_url = openid_configuration_url
        self._lifetime = lifetime
        self._cooldown = refresh_cooldown
        self._fetch_json = fetch_json or _HttpJsonFetcher()
        self._clock = clock
        self._jwks_uri: str | None = None
        self._keyset: _KeySet | None = None
        self._last_attempt: float | None = None
        self._fetches = 0
        self._lock = threading.Lock()

    @property
    def fetch_count(self) -> int:
        """Number of key-set fetch attempts so far (for tests and diagnostics)."""
        return self._fetches

    def get_key(self, kid: str) -> RSAPublicKey | None:
        """Return the public key for ``kid``, or None if the tenant does not publish it.

        Raises :class:`KeysUnavailableError` only when no key set was ever obtained.
        """
        keyset = self._keyset
        now = self._clock()
        if keyset is not None and now - keyset.fetched_at < self._lifetime and kid in keyset.keys:
            return keyset.keys[kid]
        if self._may_fetch(now, cold=keyset is None) or self._lock.locked():
            # A fetch is due, or one is already in flight: wait for it and share its result
            # (otherwise requests racing a key rotation or a cold start would be refused).
            keyset = self._refresh(seen=keyset)
        else:
            keyset = self._keyset  # a fetch may have finished since it was read above
        if keyset is None:
            raise KeysUnavailableError("the signing keys could not be fetched")
        return keyset.keys.get(kid)

    def _may_fetch(self, now: float, *, cold: bool) -> bool:
        if self._last_attempt is None:
            return True
        # With no keys at all, retry sooner than the full cool-down so a cold start
        # recovers quickly once the key endpoint is back.
        cooldown = min(self._cooldown, 5.0) if cold else self._cooldown
        return now - self._last_attempt >= cooldown

    def _refresh(self, seen: _KeySet | None) -> _KeySet | None:
        with self._lock:
            current = self._keyset
            # Another thread refreshed while this one waited for the lock: use its work.
            if current is not seen:
                return current
            now = self._clock()
            if not self._may_fetch(now, cold=current is None):
                return current
            self._last_attempt = now
            self._fetches += 1
            try:
                keys = self._fetch_keys()
            except KeyFetchError as exc:
                log.warning("Signing key refresh failed; %s", exc)
                return current
            except Exception:
                # An unexpected failure (a transport error nobody wrapped, a fetcher bug) must not
                # turn every request into a 500 while good keys are still cached.
                log.warning("Signing key refresh failed unexpectedly", exc_info=True)
                return current
            self._keyset = _KeySet(keys=keys, fetched_at=self._clock())
            log.info("Signing keys refreshed: %d key(s)", len(keys))
            return self._keyset

    def _fetch_keys(self) -> dict[str, RSAPublicKey]:
        if self._jwks_uri is None:
            config = self._fetch_json(self._config_url)
            jwks_uri = config.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
                raise KeyFetchError("the OpenID configuration has no https jwks_uri")
            self._jwks_uri = jwks_uri
        document = self._fetch_json(self._jwks_uri)
        return parse_jwks(document)


def parse_jwks(document: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """Keep the RSA signing keys of a JWKS document; ignore everything else."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyFetchError("the key document has no 'keys' list")
    keys: dict[str, RSAPublicKey] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        kid, n, e = entry.get("kid"), entry.get("n"), entry.get("e")
        if not (isinstance(kid, str) and isinstance(n, str) and isinstance(e, str)):
            continue
        try:
            numbers = RSAPublicNumbers(_b64url_int(e), _b64url_int(n))
            keys[kid] = numbers.public_key()
        except ValueError:
            log.warning("Ignoring a malformed key in the key document (kid=%s)", log_value(kid))
    if not keys:
        raise KeyFetchError("the key document has no usable RSA signing key")
    return keys


def _b64url_int(value: str) -> int:
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


class _HttpJsonFetcher:
    """GET a small JSON document over HTTPS with bounded time and size, following no redirect.

    The standard library's client rather than ``requests``: the Functions worker has already
    imported ``urllib``, whereas importing ``requests`` would add about 65 ms to the first
    request after every cold start (see benchmarks/README.md). TLS trust is the platform's;
    a private CA is trusted through ``SSL_CERT_FILE``.
    """

    timeout = 5.0  # seconds, for the connection and for each read

    def __init__(self) -> None:
        self._opener: Any = None

    def __call__(self, url: str) -> Mapping[str, Any]:
        import http.client
        import urllib.error
        import urllib.request

        if self._opener is None:
            self._opener = urllib.request.build_opener(_refuse_redirects())
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                if response.status != 200:
                    raise KeyFetchError(f"{url} answered HTTP {response.status}")
                body = response.read(MAX_DOCUMENT_BYTES + 1)
                # A body cut short comes back short, not as an error: Content-Length tells.
                if len(body) <= MAX_DOCUMENT_BYTES and response.length:
                    raise KeyFetchError(f"{url} could not be fetched (the body was cut short)")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise KeyFetchError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise KeyFetchError(f"{url} could not be fetched ({type(exc).__name__})") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise KeyFetchError(f"{url} returned a document larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise KeyFetchError(f"{url} did not return JSON") from None
        if not isinstance(document, dict):
            raise KeyFetchError(f"{url} did not return a JSON object")
        return document


def _refuse_redirects() -> Any:
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        # A key document is fetched from exactly where the tenant says it is; a redirect
        # elsewhere is an error, never followed.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return RefuseRedirects()
