"""What ties Entra's answer to the browser that consented and the code to the client that asked, with no store.

Entra sees one client (the bridge's public client, pre-authorized on the API), so on its own it cannot tell the
MCP clients apart: a link to Entra's authorize endpoint with the bridge's client ID would come back with a code
and no consent page (the confused deputy of FastMCP's CVE-2026-27124). Two bindings close that:

* **The state Entra carries** is sealed by the bridge: the client, its redirect URI and state, a digest of the
  consenting browser's cookie nonce, and an expiry. Entra returns the user to the bridge's own callback, which
  forwards the code to the client only when the browser's cookie has that nonce: a browser that did not consent
  here gets nothing.
* **The PKCE challenge Entra sees** is derived from the client's: ``S256(HMAC(key, client | redirect | challenge))``.
  At the token endpoint the bridge recomputes the verifier from what the client sends, so a code redeems only
  for the client and redirect URI it was issued through, with that client's own verifier, and only through
  this bridge.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from shared.bridge.signing import Signer, b64url

FLIGHT_SECONDS = 10 * 60  # from consent to Entra's answer; Entra's own codes live for minutes too


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def nonce_digest(nonce: str) -> str:
    return b64url(hashlib.sha256(b"sign-in-flight\0" + nonce.encode("ascii")).digest()[:16])


@dataclass(frozen=True)
class Flight:
    """One sign-in between the consent and Entra's answer."""

    client_id: str
    redirect_uri: str
    client_state: str | None
    browser: str  # nonce_digest of the consenting browser's cookie nonce


class SignInBinding:
    def __init__(self, state_signer: Signer, pkce_signer: Signer) -> None:
        self._state = state_signer
        self._pkce = pkce_signer

    def seal(self, flight: Flight, *, now: float | None = None) -> str:
        expires = int(time.time() if now is None else now) + FLIGHT_SECONDS
        return self._state.seal({"c": flight.client_id, "r": flight.redirect_uri, "s": flight.client_state,
                                 "b": flight.browser, "e": expires})

    def open(self, sealed: str, *, now: float | None = None) -> Flight | None:
        """The flight sealed into Entra's ``state``, or None if it is not ours or has expired."""
        payload = self._state.unseal(sealed)
        if not isinstance(payload, dict):
            return None
        fields = (payload.get("c"), payload.get("r"), payload.get("b"))
        if not all(isinstance(v, str) for v in fields) or not isinstance(payload.get("e"), int):
            return None
        if payload["e"] < (time.time() if now is None else now):
            return None
        state = payload.get("s")
        return Flight(client_id=payload["c"], redirect_uri=payload["r"],
                      client_state=state if isinstance(state, str) else None, browser=payload["b"])

    def entra_verifier(self, client_id: str, redirect_uri: str, client_challenge: str) -> str:
        # 43 base64url characters: a valid RFC 7636 verifier.
        return self._pkce.mac(client_id, redirect_uri, client_challenge)

    def entra_challenge(self, client_id: str, redirect_uri: str, client_challenge: str) -> str:
        return s256(self.entra_verifier(client_id, redirect_uri, client_challenge))
