"""What the bridge remembers about one browser, in one signed cookie: a nonce and the clients it allowed.

``__Host-`` pins the cookie to this origin (Secure, Path=/, no Domain); ``SameSite=Lax`` sends it on the
top-level GET a client's sign-in starts with but not on a cross-site POST. The consent form's token is a MAC over
this browser's nonce, every forwarded parameter and the time it was issued, so a form replayed from elsewhere, later,
or with other fields is refused. Consent is remembered per client *and* redirect URI: allowing a client to send you
back to your own machine does not allow it to send you to a web callback. The nonce also binds Entra's answer to
this browser (``shared.bridge.binding``).
Browsers treat ``http://localhost`` as secure, so this works under ``func start`` too.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.bridge.redirects import without_loopback_port
from shared.bridge.signing import Signer, b64url

COOKIE_NAME = "__Host-mcp-sign-in"
CONSENT_SECONDS = 30 * 24 * 3600
FORM_SECONDS = 10 * 60
MAX_REMEMBERED_CLIENTS = 16


def client_key(client_id: str, redirect_uri: str) -> str:
    text = f"{client_id}\0{without_loopback_port(redirect_uri)}"
    return b64url(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16])


@dataclass
class BrowserState:
    nonce: str
    consents: dict[str, int] = field(default_factory=dict)  # client key -> expiry (Unix seconds)
    is_new: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], signer: Signer, *, now: float | None = None) -> BrowserState:
        now = time.time() if now is None else now
        payload = signer.unseal(_cookie(headers.get("cookie", ""), COOKIE_NAME) or "")
        if (isinstance(payload, dict) and isinstance(payload.get("n"), str) and len(payload["n"]) >= 16
                and isinstance(payload.get("c"), dict)):
            consents = {k: v for k, v in payload["c"].items() if isinstance(v, int) and v > now}
            return cls(nonce=payload["n"], consents=consents)
        return cls(nonce=b64url(os.urandom(18)), is_new=True)

    def has_consented(self, client_id: str, redirect_uri: str) -> bool:
        return client_key(client_id, redirect_uri) in self.consents

    def remember_consent(self, client_id: str, redirect_uri: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        key = client_key(client_id, redirect_uri)
        self.consents.pop(key, None)
        self.consents[key] = int(now) + CONSENT_SECONDS
        while len(self.consents) > MAX_REMEMBERED_CLIENTS:
            del self.consents[next(iter(self.consents))]

    def set_cookie(self, signer: Signer) -> str:
        value = signer.seal({"n": self.nonce, "c": self.consents})
        return f"{COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={CONSENT_SECONDS}"

    def form_token(self, signer: Signer, fields: Mapping[str, str], *, now: float | None = None) -> str:
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{signer.mac(self.nonce, issued, *_canonical(fields))}"

    def accepts_form_token(self, signer: Signer, token: str, fields: Mapping[str, str], *,
                           now: float | None = None) -> bool:
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or len(issued) > 12:
            return False
        age = (time.time() if now is None else now) - int(issued)
        return -60 <= age <= FORM_SECONDS and signer.verify_mac(mac, self.nonce, issued, *_canonical(fields))


def _canonical(fields: Mapping[str, str]) -> list[str]:
    # Absent and empty differ; the order is fixed by the caller's tuple of names, not by the form.
    return [f"{name}={value}" for name, value in sorted(fields.items())]


def _cookie(header: str, name: str) -> str | None:
    for item in header.split(";"):
        key, _, value = item.strip().partition("=")
        if key == name:
            return value
    return None
