"""Integrity-protected ``requestState`` for multi round-trip requests, with no server-side store.

The state travels through the client, so it is attacker-controlled input (MCP 2026-07-28 MRTR). It is
sealed as ``v1.<key id>.<payload>.<HMAC-SHA256>`` (base64url parts), where the signed payload carries:

* ``b`` - what it was issued for (``tools/call:<name>``, ``prompts/get:<name>``, ``resources/read:<uri>``),
* ``s`` - who it was issued to (the caller's tenant and object ID), so another user cannot replay it,
* ``a`` - a digest of the request's arguments (SHA-256 of their canonical JSON: sorted keys, no spaces),
  so a round answered for one set of arguments cannot be replayed with another ("transfer 10?" answered
  yes, then retried as a transfer of 10,000),
* ``k`` - the keys of the input requests the round issued: answers under any other key were never asked
  for, and ``shared.protocol.input_rounds`` drops them,
* ``e`` - an expiry (Unix seconds),
* ``d`` - the function's own state.

It is signed, not encrypted: the client can read it (hence a digest of the arguments, never the
arguments). The key must be the same on every instance of the app (it scales out); ``MCP_REQUEST_STATE_KEY``
supplies one, otherwise each process makes its own and state issued by another instance is treated as stale
(the round trip starts again). So is state sealed before ``a``/``k`` existed: its round simply starts again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL_SECONDS = 10 * 60
MAX_STATE_CHARS = 64 * 1024
MIN_KEY_BYTES = 32


class InvalidRequestState(ValueError):
    """The state was tampered with, expired, or issued to another caller or request."""


class StaleRequestState(InvalidRequestState):
    """The state was sealed with a key this process does not hold (another instance, or a rotated key),
    or by an earlier version of this server: not an attack, the round trip just starts again."""


@dataclass(frozen=True)
class OpenedState:
    """A verified ``requestState``: the function's own state and the input-request keys its round issued."""

    data: Any
    keys: frozenset[str]


def arguments_digest(arguments: Any) -> str:
    """SHA-256 (base64url) of the canonical JSON of ``arguments``: sorted keys, no spaces, ASCII escapes.

    Raises ValueError for what JSON cannot carry (the engine only ever passes parsed JSON).
    """
    try:
        text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"the arguments are not canonical JSON: {type(exc).__name__}") from None
    return _b64(hashlib.sha256(text.encode("ascii")).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RequestStateCodec:
    def __init__(self, key: bytes | None = None, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        if key is None:
            key = os.urandom(MIN_KEY_BYTES)
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the request-state key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        # A short, non-secret key fingerprint tells "another instance's key" apart from tampering.
        self._kid = _b64(hashlib.sha256(b"mcp-request-state-kid\0" + key).digest()[:6])
        self.ttl_seconds = ttl_seconds

    def seal(self, data: Any, *, binding: str, subject: str, arguments: Any = None, keys: Iterable[str] = (),
             now: float | None = None) -> str:
        """Seal ``data`` for one caller, target and set of arguments; ``keys`` are the input requests issued."""
        issued = time.time() if now is None else now
        payload = json.dumps(
            {"b": binding, "s": subject, "a": arguments_digest(arguments), "k": sorted(set(keys)),
             "e": int(issued) + self.ttl_seconds, "d": data},
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str,
        ).encode("utf-8")
        body = f"v1.{self._kid}.{_b64(payload)}"
        return f"{body}.{self._mac(body)}"

    def open(self, token: Any, *, binding: str, subject: str, arguments: Any = None,
             now: float | None = None) -> OpenedState:
        """Verify ``token`` for this caller, target and ``arguments``; raise InvalidRequestState (or Stale...)."""
        if not isinstance(token, str) or len(token) > MAX_STATE_CHARS:
            raise InvalidRequestState("requestState must be a string issued by this server")
        parts = token.split(".")
        # Non-ASCII text can never be a valid token, and compare_digest refuses it with a TypeError.
        if not token.isascii() or len(parts) != 4 or parts[0] != "v1":
            raise InvalidRequestState("requestState is malformed")
        if not hmac.compare_digest(parts[1], self._kid):
            raise StaleRequestState("requestState was issued with another key")
        if not hmac.compare_digest(parts[3], self._mac(".".join(parts[:3]))):
            raise InvalidRequestState("requestState integrity check failed")
        try:
            payload = json.loads(_unb64(parts[2]))
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequestState("requestState is malformed") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
            raise InvalidRequestState("requestState is malformed")
        if payload["e"] < (time.time() if now is None else now):
            raise InvalidRequestState("requestState has expired")
        if not hmac.compare_digest(str(payload.get("s")), subject):
            raise InvalidRequestState("requestState was issued to another caller")
        if payload.get("b") != binding:
            raise InvalidRequestState("requestState was issued for another request")
        keys = payload.get("k")
        if not isinstance(payload.get("a"), str) or not isinstance(keys, list):
            # Sealed (with this key) by a version that bound neither arguments nor keys: start again.
            raise StaleRequestState("requestState was issued by an earlier version of this server")
        if not hmac.compare_digest(payload["a"], arguments_digest(arguments)):
            raise InvalidRequestState("requestState was issued for other arguments")
        return OpenedState(payload.get("d"), frozenset(k for k in keys if isinstance(k, str)))

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

