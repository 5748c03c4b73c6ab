"""A stand-in for the verified caller, for tests that exercise registries and the engine without tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class FakeCaller:
    """Shaped like ``shared.entra.tokens.Principal`` (the ``shared.features.context.Caller`` protocol).

    ``kind="app"`` stands for an application calling as itself (an app-only token): give it ``scopes=frozenset()``.
    """

    claims: Mapping[str, Any] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset({"user_impersonation"})
    roles: frozenset[str] = frozenset()
    kind: Literal["user", "app"] = "user"

    @property
    def oid(self) -> str:
        return str(self.claims.get("oid", ""))

    @property
    def client_app_id(self) -> str:
        return str(self.claims.get("azp") or self.claims.get("appid") or "")

    @property
    def is_app(self) -> bool:
        return self.kind == "app"


ALICE = FakeCaller(claims={"tid": "t1", "oid": "alice"})
BOB = FakeCaller(claims={"tid": "t1", "oid": "bob"})
