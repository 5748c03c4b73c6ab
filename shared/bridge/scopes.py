"""Scopes as clients ask for them -> the full names Entra needs.

Clients ask for what the Protected Resource Metadata lists (full names such as
``api://<tenant>/<app>/user_impersonation``), sometimes for short names, sometimes for nothing. Entra reads a bare
short name as a Microsoft Graph scope, so every API scope is sent in full. Scopes of other resources are refused:
the bridge obtains tokens for this server only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
MAX_SCOPES = 20
_SHORT = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class ScopeError(ValueError):
    pass


class ScopeMap:
    def __init__(self, app_id_uri: str, required_scopes: Iterable[str]) -> None:
        self._prefix = app_id_uri + "/"
        self.required = tuple(self._prefix + s for s in required_scopes)

    def to_entra(self, requested: str | None) -> tuple[str, ...]:
        """The scopes to ask Entra for: this API's in full, any OpenID scopes, always ``offline_access``."""
        items = (requested or "").split()
        if len(items) > MAX_SCOPES:
            raise ScopeError(f"at most {MAX_SCOPES} scopes")
        out: list[str] = []
        for item in items:
            full_name = item.startswith(self._prefix) and _SHORT.fullmatch(item[len(self._prefix):])
            if item in OIDC_SCOPES or full_name:
                out.append(item)
            elif _SHORT.fullmatch(item) and ":" not in item:
                out.append(self._prefix + item)
            else:
                raise ScopeError(f"scope {item[:100]!r} is not a scope of this server")
        if not any(s.startswith(self._prefix) for s in out):
            out[:0] = self.required
        out.append("offline_access")
        return tuple(dict.fromkeys(out))
