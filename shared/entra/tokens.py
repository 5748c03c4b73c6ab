"""Validation of Microsoft Entra ID access tokens issued for this API.

Knows nothing of MCP or HTTP: a bearer string goes in, a verified :class:`Principal`
comes out, or a :class:`TokenError` says which kind of refusal applies. The reason a
token failed is meant for the log; the caller only gets the short ``description``.

Safe defaults, in the spirit of Microsoft.Identity.Web: RS256 only; keys only from the
tenant's published key set (never from ``jku``, ``x5u``, ``x5c`` or an embedded ``jwk``);
``iss``, ``aud``, ``exp``, ``tid`` required and checked; v2 tokens only (the app
registration requests them, and v1 issuer/audience forms are then never legitimate).

Two kinds of caller are admitted (see :func:`is_app_only` for how a token's kind is decided):

* a **user**, through a client app (delegated token): its client in ``ENTRA_ALLOWED_CLIENT_IDS`` and every
  ``MCP_REQUIRED_SCOPES`` scope in ``scp``;
* an **application** calling as itself (app-only token: client credentials, a managed identity, an Entra agent
  identity): its client in ``ENTRA_ALLOWED_CLIENT_IDS`` and at least one ``MCP_APP_ROLES`` app role in ``roles``.
  Without ``MCP_APP_ROLES`` every app-only token is refused.

Whatever a refused token carried reaches the log only through :func:`shared.entra.logsafe.log_value`, so no
attacker-chosen text can pass for a field of a log line.
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
from typing import TYPE_CHECKING, Any, Literal

import jwt

from shared.entra.keys import JwksCache, KeysUnavailableError
from shared.entra.logsafe import log_value

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger("mcp.auth")

# Entra tokens are usually 1-3 KB; large group overage claims stay well below this.
MAX_TOKEN_LENGTH = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 120
_UNTRUSTED_KEY_HEADERS = ("jku", "x5u", "x5c", "jwk")

__all__ = ["CallerKind", "KeysUnavailableError", "Principal", "Refusal", "TokenError", "TokenValidator",
           "is_app_only", "kind_of_validated_token"]

CallerKind = Literal["user", "app"]
# How many role names (and characters of them) a refusal description lists: it is the challenge's error_description.
_ROLES_NAMED = 3
_ROLES_NAMED_LENGTH = 100


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
    def kind(self) -> CallerKind:
        """``"app"`` for an application calling as itself (app-only token), else ``"user"`` (see is_app_only)."""
        return "app" if is_app_only(self.claims) else "user"

    @property
    def is_app(self) -> bool:
        """True for an app-only caller: ``oid`` is then its service principal, ``client_app_id`` its app ID."""
        return is_app_only(self.claims)

    @property
    def is_app_only(self) -> bool:
        """The same as :attr:`is_app` (the older name)."""
        return is_app_only(self.claims)


def is_app_only(claims: Mapping[str, Any]) -> bool:
    """Whether verified v2 access-token ``claims`` are an app-only token (an application calling as itself).

    Decided from ``idtyp`` and ``scp``, never from ``roles``:

    * ``idtyp`` is ``"app"``: app-only. Microsoft calls it "the most accurate way for an API to determine if a
      token is an app token or an app+user token"; Entra emits it in app-only access tokens (the optional claims
      reference: "by default it's only emitted for app-only tokens"), and in user tokens (as ``"user"``) only when
      the API configures the optional claim with ``include_user_token``. Any other value is not app-only.
    * ``idtyp`` absent: app-only only when there is no ``scp`` and ``oid`` equals ``sub``, Microsoft's documented
      test for app-only tokens ("Protected web API: verify scopes and app roles"): for an application both are its
      service principal's object ID, while a user's ``sub`` is pairwise (per user and API) and never their
      ``oid``. This is only a fallback in case a tenant's app-only tokens lack ``idtyp``.

    ``roles`` decides nothing: Entra puts a user's own app-role assignments in ``roles`` of delegated tokens too, so
    a user token with ``roles`` (with or without ``scp``) stays a user token. ``scp`` is only in delegated tokens; a
    token claiming both ``idtyp`` ``"app"`` and ``scp`` is app-only here and refused by the validator (it is
    neither a user nor a well-formed app token).
    """
    idtyp = claims.get("idtyp")
    if idtyp is not None:
        return idtyp == "app"
    oid, sub = claims.get("oid"), claims.get("sub")
    return "scp" not in claims and isinstance(oid, str) and bool(oid) and oid == sub


def kind_of_validated_token(token: str) -> CallerKind | None:
    """The caller kind of a token the pipeline has already validated, read from its payload; None if unreadable.

    For code that is handed the validated bearer token rather than the Principal (the on-behalf-of factory):
    it must never be used to decide whether an unvalidated token is acceptable.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    return "app" if is_app_only(claims) else "user"


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
        app_roles: Iterable[str] = (),
        leeway: float = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        self._tenant_id = tenant_id
        self._audience = audience
        self._issuer = issuer
        self._allowed_clients = frozenset(c.lower() for c in allowed_client_ids)
        self._required_scopes = tuple(required_scopes)
        # MCP_APP_ROLES: an app-only token needs one of these; empty: app-only tokens are refused.
        self._app_roles = tuple(dict.fromkeys(app_roles))
        self._keys = keys
        self._leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings, *, keys: JwksCache | None = None, **options: Any) -> TokenValidator:
        """The validator for this app's settings; ``keys`` defaults to a key cache for the tenant's keys."""
        return cls(
            tenant_id=settings.tenant_id,
            audience=settings.client_id,
            issuer=settings.issuer,
            allowed_client_ids=settings.allowed_client_ids,
            required_scopes=settings.required_scopes,
            app_roles=settings.app_roles,
            keys=keys or JwksCache(settings.openid_configuration_url),
            **options,
        )

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
            raise _invalid("the token's signing algorithm is not accepted",
                           detail=f"alg={log_value(header.get('alg'), 40)}")
        untrusted = [h for h in (*_UNTRUSTED_KEY_HEADERS, "crit") if h in header]
        if untrusted:
            raise _invalid("the token names its own key", detail=f"untrusted headers={','.join(untrusted)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise _invalid("the token has no usable key id", detail="missing or malformed kid")
        key = self._keys.get_key(kid)
        if key is None:
            raise _invalid("the token was not signed by this tenant", detail=f"unknown kid={log_value(kid, 80)}")
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
            raise _invalid("the token lacks a required claim", detail=f"missing claim={log_value(exc.claim)}") from None
        except jwt.PyJWTError as exc:
            raise _invalid("the token is invalid", detail=f"{type(exc).__name__}") from None
        if claims.get("tid") != self._tenant_id:
            raise _invalid("the token is from another tenant", detail="tid mismatch")
        if claims.get("ver") != "2.0":
            raise _invalid("only v2.0 access tokens are accepted", detail=f"ver={log_value(claims.get('ver'), 20)}")
        return claims

    def _authorize(self, principal: Principal) -> None:
        client = principal.client_app_id.lower()
        if client not in self._allowed_clients:
            raise TokenError(
                Refusal.CLIENT_NOT_ALLOWED,
                "this client application is not allowed to call this server",
                detail=f"client app {log_value(client)} is not in ENTRA_ALLOWED_CLIENT_IDS",
            )
        if principal.is_app:
            self._authorize_app(principal)
            return
        missing = [s for s in self._required_scopes if s not in principal.scopes]
        if missing:
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                "the token lacks a required scope",
                detail=f"missing scopes={','.join(missing)}",
            )

    def _authorize_app(self, principal: Principal) -> None:
        """An application calling as itself: admitted by one of MCP_APP_ROLES, never by scopes."""
        if "scp" in principal.claims:
            # idtyp=app with delegated scopes: not a token Entra issues; neither kind can be trusted.
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                "an app-only token must not carry delegated scopes",
                detail="app-only token (idtyp app) with an scp claim",
            )
        if not self._app_roles:
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                "a delegated (user) token is required",
                detail="app-only token and MCP_APP_ROLES is not set",
            )
        if not any(role in principal.roles for role in self._app_roles):
            named = _name_roles(self._app_roles)
            # The token's own roles, for the operator: signed by Entra, still encoded like any claim value.
            held = ",".join(log_value(r, 40) for r in sorted(principal.roles)[:5]) or "-"
            raise TokenError(
                Refusal.INSUFFICIENT_SCOPE,
                f"the app-only token lacks an app role this server admits: {named}",
                detail=f"app-only token without an MCP_APP_ROLES role: roles={held} count={len(principal.roles)}",
            )


def _name_roles(roles: tuple[str, ...]) -> str:
    """``A or B or another``: the first roles, as many as fit in a short description (at least one).

    `` or ``, not commas: the description is also the quoted ``error_description`` of the challenge.
    """
    named = [roles[0]]
    for role in roles[1:_ROLES_NAMED]:
        if sum(len(r) for r in named) + len(role) > _ROLES_NAMED_LENGTH:
            break
        named.append(role)
    return " or ".join(named) + (" or another" if len(roles) > len(named) else "")


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
