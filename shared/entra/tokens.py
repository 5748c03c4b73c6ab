"""Validation of Microsoft Entra ID access tokens issued for this API.

Knows nothing of MCP or HTTP: a bearer string goes in, a verified :class:`Principal`
comes out, or a :class:`TokenError` says which kind of refusal applies. The reason a
token failed is meant for the log; the caller only gets the short ``description``.

Safe defaults, in the spirit of Microsoft.Identity.Web: RS256 only; keys only from the
tenant's published key set (never from ``jku``, ``x5u``, ``x5c`` or an embedded ``jwk``);
``iss``, ``aud``, ``exp``, ``tid`` required and checked; v2 tokens only (the app
registration requests them, and v1 issuer/audience forms are then never legitimate).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt

from shared.entra.keys import JwksCache, KeysUnavailableError

log = logging.getLogger("mcp.auth")

# Entra tokens are usually 1-3 KB; large group overage claims stay well below this.
MAX_TOKEN_LENGTH = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 120
_UNTRUSTED_KEY_HEADERS = ("jku", "x5u", "x5c", "jwk")

__all__ = ["KeysUnavailableError", "Principal", "Refusal", "TokenError", "TokenValidator"]


class Refusal(enum.Enum):
    """Which answer a refused token deserves (the HTTP layer maps these to 401/403)."""

    INVALID_TOKEN = "invalid_token"          # 401: authenticate again
    INSUFFICIENT_SCOPE = "insufficient_scope"  # 403: a token with more scopes may help
    CLIENT_NOT_ALLOWED = "client_not_allowed"  # 403: re-authenticating will not help


class TokenError(Exception):
    def __init__(self, refusal: Refusal, description: str, *, detail: str = "") -> None:
        super().__init__(description)
        self.refusal = refusal
        self.description = description
        # For the log only; never contains the token itself.
        self.detail = detail or description


@dataclass(frozen=True)
class Principal:
    """The verified caller. ``claims`` is read-only; the raw token is deliberately absent."""

    claims: Mapping[str, Any]
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def oid(self) -> str:
        return str(self.claims.get("oid", ""))

    @property
    def tenant_id(self) -> str:
        return str(self.claims.get("tid", ""))

    @property
    def client_app_id(self) -> str:
        return str(self.claims.get("azp") or self.claims.get("appid") or "")

    @property
    def name(self) -> str:
        return str(self.claims.get("name", ""))

    @property
    def preferred_username(self) -> str:
        return str(self.claims.get("preferred_username", ""))

    @property
    def is_app_only(self) -> bool:
        return self.claims.get("idtyp") == "app" or "scp" not in self.claims


class TokenValidator:
    def __init__(
        self,
        *,
        tenant_id: str,
        audience: str,
        issuer: str,
        allowed_client_ids: Iterable[str],
        required_scopes: Iterable[str],
        keys: JwksCache,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        self._tenant_id = tenant_id
        self._audience = audience
        self._issuer = issuer
        self._allowed_clients = frozenset(c.lower() for c in allowed_client_ids)
        self._required_scopes = tuple(required_scopes)
        self._keys = keys
        self._leeway = leeway

    def validate(self, token: str) -> Principal:
        """Verify ``token`` and authorize its client and scopes.

        Raises :class:`TokenError`, or :class:`KeysUnavailableError` when the signing keys
        cannot be obtained at all (the token is then neither accepted nor blamed).
        """
        claims = self._verify(token)
        principal = Principal(
            claims=MappingProxyType(claims),
            scopes=frozenset(str(claims.get("scp", "")).split()),
            roles=frozenset(r for r in claims.get("roles", ()) if isinstance(r, str))
            if isinstance(claims.get("roles"), list) else frozenset(),
        )
        self._authorize(principal)
        return principal

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("the token is too large", detail=f"token length {len(token)} > {MAX_TOKEN_LENGTH}")
        if token.count(".") != 2:
            raise _invalid("the token is not a signed JWT", detail="not three dot-separated segments")
        header = _read_header(token)
        if header.get("alg") != "RS256":
            raise _invalid("the token's signing algorithm is not accepted", detail=f"alg={header.get('alg')!r:.40}")
        untrusted = [h for h in (*_UNTRUSTED_KEY_HEADERS, "crit") if h in header]
        if untrusted:
            raise _invalid("the token names its own key", detail=f"untrusted headers {untrusted}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise _invalid("the token has no usable key id", detail="missing or malformed kid")
        key = self._keys.get_key(kid)
        if key is None:
            raise _invalid("the token was not signed by this tenant", detail=f"unknown kid {kid!r:.80}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                # iat is informational in Entra tokens (Microsoft.Identity.Web does not check it); exp and
                # nbf bound validity, and a skewed iat must not refuse an otherwise valid token.
                options={"require": ["exp", "iss", "aud", "tid"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise _invalid("the token is for another audience", detail="aud mismatch") from None
        except jwt.InvalidIssuerError:
            raise _invalid("the token is from another issuer", detail="iss mismatch") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid("the token lacks a required claim", detail=f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise _invalid("the token is invalid", detail=f"{type(exc).__name__}") from None
        if claims.get("tid") != self._tenant_id:
            raise _invalid("the token is from another tenant", detail="tid mismatch")
        if claims.get("ver") != "2.0":
            raise _invalid("only v2.0 access tokens are accepted", detail=f"ver={claims.get('ver')!r:.20}")
        return claims

    def _authorize(self, principal: Principal) -> None:
        client = principal.client_app_id.lower()
        if client not in self._allowed_clients:
            raise TokenError(
                Refusal.CLIENT_NOT_ALLOWED,
                "this client application is not allowed to call this server",
                detail=f"client app {client[:64]!r} is not in ENTRA_ALLOWED_CLIENT_IDS",
            )
        if principal.is_app_only:
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                "a delegated (user) token is required",
                detail="app-only token",
            )
        missing = [s for s in self._required_scopes if s not in principal.scopes]
        if missing:
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                "the token lacks a required scope",
                detail=f"missing scopes {missing}",
            )


def _read_header(token: str) -> dict[str, Any]:
    """Decode the JOSE header alone, to pick the key and refuse bad algorithms before any crypto.

    Cheaper than ``jwt.get_unverified_header``, which validates the whole token character by
    character in Python; PyJWT still parses and checks everything during verification.
    """
    segment = token.split(".", 1)[0]
    if not 0 < len(segment) <= 2048:
        raise _invalid("the token is malformed", detail="header segment empty or too long")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise _invalid("the token is malformed", detail="header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise _invalid("the token is malformed", detail="header is not a JSON object")
    return header


def _invalid(description: str, *, detail: str = "") -> TokenError:
    return TokenError(Refusal.INVALID_TOKEN, description, detail=detail)
