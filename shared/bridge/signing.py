"""HMAC-SHA256 seals for the bridge's self-describing values, one derived key per purpose.

Dynamic-registration client IDs, the browser cookie and consent-form tokens all travel through clients and
browsers, so they are attacker-controlled input; they are signed, not encrypted (nothing in them is secret).
Every purpose gets its own key, derived from one master key (``MCP_REQUEST_STATE_KEY``, or a per-process
random key), so a value sealed for one purpose never verifies as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Seals and verifies values for one purpose (``label``)."""

    def __init__(self, master_key: bytes, label: str) -> None:
        self._key = hmac.new(master_key, b"mcp-sign-in-bridge\0" + label.encode("ascii"), hashlib.sha256).digest()

    def mac(self, *parts: str) -> str:
        """A MAC over several strings; the separator keeps ("ab", "c") and ("a", "bc") apart."""
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        return b64url(hmac.new(self._key, message, hashlib.sha256).digest())

    def verify_mac(self, mac: str, *parts: str) -> bool:
        return isinstance(mac, str) and mac.isascii() and hmac.compare_digest(mac, self.mac(*parts))

    def seal(self, payload: Any) -> str:
        body = b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
        return f"{body}.{self.mac(body)}"

    def unseal(self, sealed: str, *, max_length: int = 8192) -> Any:
        """The payload of a value this signer sealed, or None for anything else (tampered, foreign, malformed)."""
        if not isinstance(sealed, str) or len(sealed) > max_length or not sealed.isascii():
            return None
        body, _, mac = sealed.partition(".")
        if not body or not self.verify_mac(mac, body):
            return None
        try:
            return json.loads(unb64url(body))
        except (ValueError, binascii.Error):
            return None
