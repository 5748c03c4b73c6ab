"""The signing-key cache: caching, bounded refresh, single flight, last good keys, safe parsing.

Most tests inject ``fetch_json`` and a clock so time and failures are exact; a few run the real
HTTPS fetcher against the fake Entra tenant.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fake_entra import FakeEntra, b64url, rsa_key
from shared.entra.keys import (
    MAX_DOCUMENT_BYTES,
    MAX_KEYS,
    JwksCache,
    KeyFetchError,
    KeysUnavailableError,
    _HttpJsonFetcher,
    parse_jwks,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_URL = "https://login.example/tenant/v2.0/.well-known/openid-configuration"
JWKS_URL = "https://login.example/tenant/discovery/v2.0/keys"
COOLDOWN = 300.0
LIFETIME = 3600.0


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "use": "sig", "kid": kid, "n": _uint(numbers.n), "e": _uint(numbers.e), **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEndpoint:
    """An injected ``fetch_json``: serves a discovery document and a mutable key set, or fails on demand."""

    def __init__(self, kids: tuple[str, ...] = ("k1",)) -> None:
        self.keys = {kid: rsa_key(i) for i, kid in enumerate(kids)}
        self.failure: BaseException | None = None
        self.jwks_document: Any = None  # override
        self.config: dict[str, Any] = {"issuer": "x", "jwks_uri": JWKS_URL}
        self.calls: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    @property
    def jwks_fetches(self) -> int:
        return self.calls.count(JWKS_URL)

    def add(self, kid: str, index: int) -> None:
        self.keys[kid] = rsa_key(index)

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.calls.append(url)
        if url == CONFIG_URL:
            return self.config
        assert url == JWKS_URL
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.failure is not None:
            raise self.failure
        if self.jwks_document is not None:
            return self.jwks_document
        return {"keys": [jwk(key, kid) for kid, key in self.keys.items()]}


def make_cache(endpoint: FakeEndpoint, clock: Clock, **kwargs: Any) -> JwksCache:
    return JwksCache(CONFIG_URL, fetch_json=endpoint, clock=clock, lifetime=LIFETIME, refresh_cooldown=COOLDOWN,
                     **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()


def same_key(a: rsa.RSAPublicKey | None, b: rsa.RSAPrivateKey) -> bool:
    return a is not None and a.public_numbers() == b.public_key().public_numbers()


# -- caching and refresh --------------------------------------------------------------------------


def test_keys_are_discovered_then_cached(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    for _ in range(5):
        assert same_key(cache.get_key("k1"), endpoint.keys["k1"])
        clock.advance(60)
    assert endpoint.calls == [CONFIG_URL, JWKS_URL]
    assert cache.fetch_count == 1


def test_unknown_kid_refreshes_at_most_once_per_cooldown(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    # Right after a fetch, forged kids cause no traffic at all.
    for kid in ("forged-1", "forged-2", "forged-3"):
        assert cache.get_key(kid) is None
    assert endpoint.jwks_fetches == 1
    clock.advance(COOLDOWN - 1)
    assert cache.get_key("forged-4") is None
    assert endpoint.jwks_fetches == 1
    clock.advance(1)
    assert cache.get_key("forged-5") is None  # cool-down over: one refresh...
    assert endpoint.jwks_fetches == 2
    assert cache.get_key("forged-6") is None  # ...and the next cool-down starts from it
    clock.advance(COOLDOWN / 2)
    assert cache.get_key("forged-7") is None
    assert endpoint.jwks_fetches == 2
    assert endpoint.calls.count(CONFIG_URL) == 1  # discovery is not repeated


def test_rotated_key_is_found_by_a_refresh(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    endpoint.add("k2", 1)
    clock.advance(COOLDOWN)
    assert same_key(cache.get_key("k2"), endpoint.keys["k2"])
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])
    assert endpoint.jwks_fetches == 2


def test_cooldown_counts_from_the_last_attempt_even_a_failed_one(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    clock.advance(COOLDOWN)
    endpoint.failure = KeyFetchError("down")
    assert cache.get_key("new") is None
    assert endpoint.jwks_fetches == 2
    endpoint.failure = None
    endpoint.add("new", 1)
    clock.advance(COOLDOWN - 1)
    assert cache.get_key("new") is None  # the failed attempt started a cool-down too
    assert endpoint.jwks_fetches == 2
    clock.advance(1)
    assert same_key(cache.get_key("new"), endpoint.keys["new"])


def test_lifetime_expiry_refreshes_known_keys(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    clock.advance(LIFETIME - 1)
    cache.get_key("k1")
    assert endpoint.jwks_fetches == 1
    clock.advance(1)
    cache.get_key("k1")
    assert endpoint.jwks_fetches == 2
    # A retired key disappears with the refresh after its lifetime.
    endpoint.keys = {"k2": rsa_key(1)}
    clock.advance(LIFETIME)
    assert cache.get_key("k1") is None
    assert same_key(cache.get_key("k2"), rsa_key(1))


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [KeyFetchError("HTTP 503"), OSError("connection reset"), RuntimeError("fetcher bug"), ValueError("bad json")],
)
def test_last_good_keys_are_kept_when_refresh_fails(endpoint: FakeEndpoint, clock: Clock,
                                                    failure: Exception) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    endpoint.failure = failure
    clock.advance(LIFETIME + 1)  # expired keys...
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])  # ...are still better than none
    clock.advance(COOLDOWN)
    assert cache.get_key("unknown") is None
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])
    assert endpoint.jwks_fetches == 3


@pytest.mark.parametrize("document", [{"keys": []}, {"keys": "x"}, {}, {"keys": [{"kty": "EC", "kid": "k1"}]}])
def test_a_malformed_refresh_keeps_the_last_good_keys(endpoint: FakeEndpoint, clock: Clock, document: Any) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    endpoint.jwks_document = document
    clock.advance(LIFETIME + 1)
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])


def test_cold_start_with_endpoint_down_then_quick_recovery(endpoint: FakeEndpoint, clock: Clock) -> None:
    cache = make_cache(endpoint, clock)
    endpoint.failure = KeyFetchError("HTTP 503")
    with pytest.raises(KeysUnavailableError):
        cache.get_key("k1")
    clock.advance(1)
    with pytest.raises(KeysUnavailableError):
        cache.get_key("k1")
    assert endpoint.jwks_fetches == 1  # a storm of requests does not hammer the key endpoint
    endpoint.failure = None
    clock.advance(5)  # with no keys at all the retry comes long before the full cool-down
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])
    assert endpoint.jwks_fetches == 2


@pytest.mark.parametrize(
    "config",
    [
        {"jwks_uri": "http://login.example/tenant/discovery/v2.0/keys"},
        {"jwks_uri": "//login.example/keys"},
        {"jwks_uri": 42},
        {"issuer": "no jwks_uri"},
    ],
)
def test_jwks_uri_must_be_https(endpoint: FakeEndpoint, clock: Clock, config: dict[str, Any]) -> None:
    endpoint.config = config
    cache = make_cache(endpoint, clock)
    with pytest.raises(KeysUnavailableError):
        cache.get_key("k1")
    assert JWKS_URL not in endpoint.calls
    assert not any(str(c).startswith("http://") for c in endpoint.calls)


def test_discovery_failure_is_retried(endpoint: FakeEndpoint, clock: Clock) -> None:
    endpoint.config = {}
    cache = make_cache(endpoint, clock)
    with pytest.raises(KeysUnavailableError):
        cache.get_key("k1")
    endpoint.config = {"jwks_uri": JWKS_URL}
    clock.advance(5)
    assert same_key(cache.get_key("k1"), endpoint.keys["k1"])


# -- single flight ------------------------------------------------------------------------------


def _run_threads(n: int, target: Callable[[], Any]) -> tuple[list[Any], list[BaseException], list[threading.Thread]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    return results, errors, threads


def test_single_flight_on_a_cold_start(endpoint: FakeEndpoint) -> None:
    endpoint.gate = threading.Event()
    cache = JwksCache(CONFIG_URL, fetch_json=endpoint, refresh_cooldown=COOLDOWN)
    results, errors, threads = _run_threads(16, lambda: cache.get_key("k1"))
    assert endpoint.entered.wait(5)
    threading.Event().wait(0.1)  # let the other threads pile up behind the one fetch in flight
    endpoint.gate.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert len(results) == 16 and all(same_key(r, endpoint.keys["k1"]) for r in results)
    assert endpoint.jwks_fetches == 1
    assert cache.fetch_count == 1


def test_single_flight_for_an_unknown_kid(endpoint: FakeEndpoint) -> None:
    clock = Clock()
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    endpoint.add("k2", 1)
    clock.advance(COOLDOWN)
    endpoint.gate = threading.Event()
    endpoint.entered.clear()
    results, errors, threads = _run_threads(12, lambda: cache.get_key("k2"))
    assert endpoint.entered.wait(5)
    threading.Event().wait(0.1)
    endpoint.gate.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert all(same_key(r, endpoint.keys["k2"]) for r in results) and len(results) == 12
    assert endpoint.jwks_fetches == 2


def test_single_flight_when_the_fetch_in_flight_fails(endpoint: FakeEndpoint) -> None:
    endpoint.gate = threading.Event()
    endpoint.failure = KeyFetchError("down")
    cache = JwksCache(CONFIG_URL, fetch_json=endpoint, refresh_cooldown=COOLDOWN)
    _, errors, threads = _run_threads(8, lambda: cache.get_key("k1"))
    assert endpoint.entered.wait(5)
    threading.Event().wait(0.1)
    endpoint.gate.set()
    for t in threads:
        t.join(10)
    # Waiters do not each retry the failed fetch: one attempt, everyone told keys are unavailable.
    assert endpoint.jwks_fetches == 1
    assert len(errors) == 8 and all(isinstance(e, KeysUnavailableError) for e in errors)


# -- parsing ------------------------------------------------------------------------------------


def test_parse_keeps_only_usable_rsa_signing_keys() -> None:
    good = jwk(rsa_key(0), "good")
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    document = {
        "keys": [
            good,
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": _uint(ec_key.x), "y": _uint(ec_key.y)},
            {"kty": "oct", "kid": "sym", "k": b64url(b"secret")},
            jwk(rsa_key(1), "enc", use="enc"),
            {**jwk(rsa_key(1), "no-n"), "n": None},
            {k: v for k, v in jwk(rsa_key(1), "no-e").items() if k != "e"},
            {k: v for k, v in jwk(rsa_key(1), "x").items() if k != "kid"},
            {**jwk(rsa_key(1), "kid-int"), "kid": 7},
            {**jwk(rsa_key(1), "bad-b64"), "n": "!!!not base64!!!"},
            {**jwk(rsa_key(1), "non-ascii"), "n": "\u00e9\u00e9\u00e9\u00e9"},
            {**jwk(rsa_key(1), "even-e"), "e": _uint(2)},
            {**jwk(rsa_key(1), "zero-n"), "n": ""},
            "not an object",
            None,
            ["list"],
        ]
    }
    keys = parse_jwks(document)
    assert list(keys) == ["good"]
    assert same_key(keys["good"], rsa_key(0))


@pytest.mark.parametrize("document", [{}, {"keys": None}, {"keys": {"k": 1}}, {"keys": []},
                                      {"keys": [{"kty": "EC", "kid": "x"}]}])
def test_parse_without_usable_keys_fails(document: Any) -> None:
    with pytest.raises(KeyFetchError):
        parse_jwks(document)


def test_parse_caps_the_number_of_keys() -> None:
    entry = jwk(rsa_key(0), "x")
    document = {"keys": [{**entry, "kid": f"k{i}"} for i in range(MAX_KEYS + 500)]}
    keys = parse_jwks(document)
    assert len(keys) == MAX_KEYS
    assert f"k{MAX_KEYS}" not in keys


def test_parse_use_missing_means_signing() -> None:
    entry = {k: v for k, v in jwk(rsa_key(0), "k").items() if k != "use"}
    assert list(parse_jwks({"keys": [entry]})) == ["k"]


# -- the real HTTPS fetcher against the fake tenant ---------------------------------------------


def test_https_discovery_and_keys_from_the_fake_tenant(entra: FakeEntra) -> None:
    cache = JwksCache(entra.discovery_url, refresh_cooldown=0)
    key = cache.get_key(entra.signing_kid)
    assert key is not None
    assert (entra.discovery_fetches, entra.jwks_fetches) == (1, 1)
    new_kid = entra.rotate()
    assert cache.get_key(new_kid) is not None
    assert (entra.discovery_fetches, entra.jwks_fetches) == (1, 2)


def test_https_single_flight_against_the_fake(entra: FakeEntra) -> None:
    cache = JwksCache(entra.discovery_url)
    entra.hold()
    results, errors, threads = _run_threads(10, lambda: cache.get_key(entra.signing_kid))
    assert entra.wait_for_fetches(jwks=1)
    threading.Event().wait(0.2)
    entra.release()
    for t in threads:
        t.join(10)
    assert not errors and len(results) == 10 and all(r is not None for r in results)
    assert entra.jwks_fetches == 1


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_https_endpoint_down_after_warm_up_keeps_keys(entra: FakeEntra, mode: str) -> None:
    cache = JwksCache(entra.discovery_url, refresh_cooldown=0, lifetime=0)
    kid = entra.signing_kid
    assert cache.get_key(kid) is not None
    entra.fail_mode = mode  # type: ignore[assignment]
    assert cache.get_key(kid) is not None  # expired, refresh fails, last good keys used
    assert entra.jwks_fetches >= 2


def test_https_cold_start_with_endpoint_down(entra: FakeEntra) -> None:
    entra.fail_mode = "503"
    cache = JwksCache(entra.discovery_url)
    with pytest.raises(KeysUnavailableError):
        cache.get_key(entra.signing_kid)


def test_http_fetcher_caps_the_document_size(entra: FakeEntra) -> None:
    entra.jwks_override = b'{"keys": [], "pad": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}'
    with pytest.raises(KeyFetchError, match="larger than"):
        _HttpJsonFetcher()(entra.jwks_uri)


def test_http_fetcher_accepts_a_document_just_under_the_cap(entra: FakeEntra) -> None:
    document = json.dumps(entra.jwks()).encode()
    entra.jwks_override = document[:-1] + b', "pad": "' + b"x" * (MAX_DOCUMENT_BYTES - len(document) - 20) + b'"}'
    assert len(entra.jwks_override) <= MAX_DOCUMENT_BYTES
    assert parse_jwks(_HttpJsonFetcher()(entra.jwks_uri))


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b'"string"'])
def test_http_fetcher_refuses_non_objects(entra: FakeEntra, body: bytes) -> None:
    entra.jwks_override = body
    with pytest.raises(KeyFetchError):
        _HttpJsonFetcher()(entra.jwks_uri)


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_http_fetcher_turns_failures_into_key_fetch_errors(entra: FakeEntra, mode: str) -> None:
    entra.fail_mode = mode  # type: ignore[assignment]
    with pytest.raises(KeyFetchError):
        _HttpJsonFetcher()(entra.jwks_uri)


def test_http_fetcher_does_not_follow_redirects() -> None:
    # A plain-HTTP listener that answers a redirect; the fetcher must not follow it.
    reply = b"HTTP/1.1 302 Found\r\nLocation: https://evil.example/keys\r\nContent-Length: 0\r\n\r\n"
    with _one_shot_server(reply) as url, pytest.raises(KeyFetchError, match="302"):
        _HttpJsonFetcher()(url)


def test_http_fetcher_body_cut_short_is_a_key_fetch_error() -> None:
    # http.client raises IncompleteRead for a body cut short; it must not escape as a 500.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"keys\": ["
    with _one_shot_server(head) as url, pytest.raises(KeyFetchError, match="could not be fetched"):
        _HttpJsonFetcher()(url)


class _one_shot_server:
    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(10)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(self.reply)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/keys"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)


def test_refresh_failure_is_logged_without_raising(endpoint: FakeEndpoint, clock: Clock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cache = make_cache(endpoint, clock)
    cache.get_key("k1")
    endpoint.failure = KeyFetchError("https://login.example/keys answered HTTP 503")
    clock.advance(LIFETIME)
    with caplog.at_level(logging.WARNING, logger="mcp.auth.jwks"):
        assert cache.get_key("k1") is not None
    assert any("refresh failed" in r.getMessage() for r in caplog.records)


# -- cold-start cost ----------------------------------------------------------------------------


def test_requests_is_imported_lazily() -> None:
    code = (
        "import sys\n"
        "import shared.entra.keys, shared.entra.tokens, shared.entra.prm, shared.settings\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'azure.identity') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
