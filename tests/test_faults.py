"""Faults: the endpoint stays correct when the signing-key endpoint fails, is slow or rotates keys, and
under a flood of unknown key ids.

Each test builds its own McpServer with a private key cache and clock against a private FakeEntra, so fetch
counters are exact and nothing leaks into other suites. Requests go through the same Functions adapter as the
registered function. ``test_jwks.py`` proves the cache's rules with an injected fetcher; these tests prove what a
client of the whole endpoint sees when the real HTTPS fetch fails.

The token endpoint and downstream API faults (slow, failing, throttling: bounded time, clear error) are proved by
``test_obo.py`` (``test_entra_outage_is_retried_then_reported``, ``test_slow_token_endpoint_times_out_within_the_
budget``, ``test_retry_after_beyond_the_budget_fails_fast_with_the_wait``, ``test_graph_errors_and_outages_become_
tool_errors``, ``test_managed_identity_endpoint_down_is_a_clear_tool_error``) and are not repeated here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fake_entra import FakeEntra, foreign_private_key
from shared.features.tools import ToolRegistry
from support import (
    Clock,
    Handler,
    Reply,
    as_function,
    assert_well_formed,
    fast_fetcher,
    legacy,
    private_server,
)

COOLDOWN = 300.0
LIFETIME = 3600.0

probe_tools = ToolRegistry()
probe_calls: list[str] = []


@probe_tools.tool
def probe() -> str:
    """Records that it ran: proves whether an unverified caller ever reached a tool."""
    probe_calls.append("ran")
    return "ran"


@pytest.fixture
def idp() -> Iterator[FakeEntra]:
    with FakeEntra() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


def build(idp: FakeEntra, clock: Clock, **options: Any) -> Handler:
    server, _ = private_server(idp, probe_tools, clock=clock, fetcher=fast_fetcher(),
                               lifetime=LIFETIME, refresh_cooldown=COOLDOWN, **options)
    return as_function(server)


def call(handler: Handler, token: str) -> Reply:
    reply = legacy(token, "tools/call", {"name": "probe", "arguments": {}}, handler=handler)
    return reply


def unknown_kid_token(idp: FakeEntra) -> str:
    return idp.mint(key=foreign_private_key(), headers={"kid": f"flood-{uuid.uuid4().hex}"})


FAULTS = ["503", "reset", "slow", "no-usable-keys", "not-json-keys"]


def inject(idp: FakeEntra, fault: str) -> None:
    if fault in ("503", "reset"):
        idp.fail_mode = fault  # type: ignore[assignment]
    elif fault == "slow":
        idp.fail_mode = "slow"
        idp.delay_seconds = 2.0  # longer than the fetcher's 0.5 s timeout
    elif fault == "no-usable-keys":
        idp.jwks_override = {"keys": [{"kty": "EC", "kid": "x", "crv": "P-256"}]}
    elif fault == "not-json-keys":
        idp.jwks_override = b"<html>maintenance</html>"


def heal(idp: FakeEntra) -> None:
    idp.fail_mode = None
    idp.delay_seconds = 0.0
    idp.jwks_override = None


# -- down after warm-up -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_key_endpoint_down_after_warm_up_keeps_serving_valid_tokens(idp: FakeEntra, clock: Clock,
                                                                     fault: str) -> None:
    handler = build(idp, clock)
    assert call(handler, idp.mint()).status == 200
    warm = idp.jwks_fetches
    inject(idp, fault)

    # Unknown kids after the cool-down make the cache try (and fail) to refresh; keys past their lifetime too.
    for step in (COOLDOWN + 1, LIFETIME + 1):
        clock.advance(step)
        started = time.monotonic()
        refused = call(handler, unknown_kid_token(idp))
        assert refused.status == 401 and refused.challenge["error"] == "invalid_token"
        assert time.monotonic() - started < 2.5  # bounded by the fetch timeout, not by the slow endpoint
        for user in ("alice", "bob", "carol"):
            reply = call(handler, idp.mint(user=user))
            assert reply.status == 200, (fault, reply.body)
            assert reply.json["result"]["content"][0]["text"] == "ran"
        forged = call(handler, idp.mint(key=foreign_private_key()))
        assert forged.status == 401  # the last good keys still verify: forgeries still fail
        assert_well_formed(forged)
    assert idp.jwks_fetches == warm + 2  # the refreshes were attempted (and failed): the outage was real

    heal(idp)
    clock.advance(COOLDOWN + 1)
    assert call(handler, unknown_kid_token(idp)).status == 401
    assert idp.jwks_fetches == warm + 3
    assert call(handler, idp.mint()).status == 200


# -- down on a cold start ---------------------------------------------------------------------------------------


def _verifiable_tokens(idp: FakeEntra) -> dict[str, str]:
    """Tokens whose verdict needs the keys: with no keys none may pass, and none may be blamed either."""
    valid = idp.mint()
    header, payload, _signature = valid.split(".")
    return {
        "valid": valid,
        "forged-same-kid": idp.mint(key=foreign_private_key()),
        "unknown-kid": unknown_kid_token(idp),
        "expired": idp.mint(expires_in=-3600),
        "other-audience": idp.mint(claims={"aud": "00000003-0000-0000-c000-000000000000"}),
        "signature-swapped": f"{header}.{payload}.{idp.mint(user='bob').split('.')[2]}",
    }


@pytest.mark.parametrize("fault", FAULTS)
def test_cold_start_with_key_endpoint_down_is_503_and_accepts_nothing(idp: FakeEntra, clock: Clock,
                                                                      fault: str) -> None:
    inject(idp, fault)
    handler = build(idp, clock)
    probe_calls.clear()

    for name, token in _verifiable_tokens(idp).items():
        reply = call(handler, token)
        assert reply.status == 503, (name, reply.status, reply.body)
        assert_well_formed(reply, allowed={503})
        assert reply.headers["retry-after"].isdigit() and 0 < int(reply.headers["retry-after"]) <= 60
        assert "www-authenticate" not in reply.headers  # the token is neither accepted nor blamed
        assert reply.json["error"] == "temporarily_unavailable"
        assert token not in reply.body.decode()
    # Tokens that fail before any key is needed are still refused outright.
    for junk in ("garbage", idp.mint(alg="none"), idp.mint(alg="HS256")):
        assert call(handler, junk).status == 401
    assert probe_calls == []  # no tool ever ran for an unverified caller
    # Within the short cold-start retry interval, the endpoint is not hammered: one attempt so far.
    assert idp.jwks_fetches <= 1

    heal(idp)
    clock.advance(5)  # the cold-start retry interval (shorter than the cool-down)
    tokens = _verifiable_tokens(idp)
    assert call(handler, tokens["valid"]).status == 200
    for name in ("forged-same-kid", "unknown-kid", "expired", "other-audience", "signature-swapped"):
        assert call(handler, tokens[name]).status == 401, name
    assert probe_calls == ["ran"]


def test_cold_start_with_discovery_down(idp: FakeEntra, clock: Clock) -> None:
    idp.discovery_override = {"issuer": idp.issuer, "jwks_uri": "http://127.0.0.1:9/keys"}  # not https
    handler = build(idp, clock)
    assert call(handler, idp.mint()).status == 503
    assert idp.jwks_fetches == 0  # a non-https key URL is never fetched
    idp.discovery_override = None
    clock.advance(5)
    assert call(handler, idp.mint()).status == 200


# -- key rotation -----------------------------------------------------------------------------------------------


def test_token_signed_by_a_new_key_passes_after_one_refresh(idp: FakeEntra, clock: Clock) -> None:
    handler = build(idp, clock)
    old_kid = idp.signing_kid
    assert call(handler, idp.mint()).status == 200
    assert idp.jwks_fetches == 1
    clock.advance(COOLDOWN + 1)

    new_kid = idp.rotate()
    assert call(handler, idp.mint()).status == 200
    assert idp.jwks_fetches == 2  # exactly one refresh found the new key
    for user in ("alice", "bob", "carol"):
        assert call(handler, idp.mint(user=user)).status == 200
        assert call(handler, idp.mint(user=user, key=old_kid)).status == 200  # still published: still valid
    assert idp.jwks_fetches == 2

    # Entra stops publishing the old key; once the cached set reaches its lifetime, the old key is gone too.
    idp.retire(old_kid)
    clock.advance(LIFETIME + 1)
    assert call(handler, idp.mint(key=old_kid)).status == 401
    assert call(handler, idp.mint(key=new_kid)).status == 200
    assert idp.jwks_fetches == 3


def test_rotation_inside_the_cool_down_is_refused_cleanly_then_recovers(idp: FakeEntra, clock: Clock) -> None:
    # Entra publishes new keys long before signing with them, so this is a worst case: the fake signs with a key
    # it published a moment ago, right after this server fetched. The answer is a plain 401 (the client gets a new
    # token or retries), never a 5xx, and the key is picked up by the first refresh the cool-down allows.
    handler = build(idp, clock)
    assert call(handler, idp.mint()).status == 200
    idp.rotate()
    clock.advance(10)
    early = call(handler, idp.mint())
    assert early.status == 401 and early.challenge["error"] == "invalid_token"
    assert idp.jwks_fetches == 1
    clock.advance(COOLDOWN)
    assert call(handler, idp.mint()).status == 200
    assert idp.jwks_fetches == 2


# -- a flood of unknown kids ------------------------------------------------------------------------------------


def test_flood_of_unknown_kids_refreshes_at_most_once_per_cool_down(idp: FakeEntra, clock: Clock) -> None:
    handler = build(idp, clock)
    valid = idp.mint()
    assert call(handler, valid).status == 200
    fetches = [idp.jwks_fetches]
    for _window in range(3):
        for i in range(150):
            assert call(handler, unknown_kid_token(idp)).status == 401
            if i % 50 == 0:
                assert call(handler, valid).status == 200  # legitimate callers are unaffected
            clock.advance(1)  # 150 s of flood per window: less than the cool-down
        fetches.append(idp.jwks_fetches)
        clock.advance(COOLDOWN)
    # 450 forged kids: the first window is inside the warm-up fetch's cool-down, each later one costs one fetch.
    assert fetches == [1, 1, 2, 3], fetches
    assert idp.discovery_fetches == 1  # discovery is not repeated for refreshes


def test_flood_under_concurrency_has_one_fetch_in_flight(idp: FakeEntra, clock: Clock) -> None:
    handler = build(idp, clock)
    valid = idp.mint()
    assert call(handler, valid).status == 200
    clock.advance(COOLDOWN + 1)
    idp.hold()  # the next key fetch stays in flight until release()
    threads = 32
    start = threading.Barrier(threads)

    def flood(_: int) -> int:
        start.wait(timeout=10)
        return call(handler, unknown_kid_token(idp)).status

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = [pool.submit(flood, i) for i in range(threads)]
            assert idp.wait_for_fetches(jwks=2, timeout=10)
            time.sleep(0.3)  # give any second fetch the chance to start
            assert idp.jwks_fetches == 2  # one in flight, every other caller waits for it
            # Callers with known keys are never stalled by a refresh in flight.
            started = time.monotonic()
            assert call(handler, valid).status == 200
            assert time.monotonic() - started < 1.0
            idp.release()
            statuses = [future.result(timeout=10) for future in results]
    finally:
        idp.release()
    assert statuses == [401] * threads
    assert idp.jwks_fetches == 2  # the waiters shared its result; the cool-down then blocks any other fetch
