"""The token endpoint: authorization-code and refresh grants, checked here and answered by Entra.

The bridge holds no codes and no tokens. It checks the client, the redirect URI and ``resource`` as
``/oauth/authorize`` did, rewrites the client ID to its own Entra public client, the redirect URI to its callback,
the verifier to the bound one (``shared.bridge.binding``) and the scopes to Entra's full names, drops ``resource``,
and relays Entra's answer. Codes, verifiers and tokens pass through memory only: they
are never logged, and the answer is ``Cache-Control: no-store``.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from shared.bridge.binding import SignInBinding, s256
from shared.bridge.clients import Client, ClientError
from shared.bridge.redirects import is_deliverable
from shared.bridge.scopes import ScopeError, ScopeMap

log = logging.getLogger("mcp.bridge")

UPSTREAM_TIMEOUT_SECONDS = 10.0
MAX_UPSTREAM_BYTES = 64 * 1024
# What a client gets back from Entra's answer; anything else Entra adds stays here.
_RESPONSE_FIELDS = ("token_type", "scope", "expires_in", "ext_expires_in", "access_token", "refresh_token",
                    "id_token")

_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")

PostForm = Callable[[str, Mapping[str, str]], tuple[int, bytes]]


def post_form(url: str, form: Mapping[str, str]) -> tuple[int, bytes]:
    """POST a form with verified TLS; (status, body) for any HTTP answer, OSError when there is none."""
    request = urllib.request.Request(url, data=urlencode(form).encode("ascii"), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_SECONDS) as response:
            return response.status, response.read(MAX_UPSTREAM_BYTES)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(MAX_UPSTREAM_BYTES)


class TokenError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class TokenExchange:
    def __init__(
        self,
        *,
        resolve_client: Callable[[str], Client],
        bridge_redirect_uris: tuple[str, ...],
        scopes: ScopeMap,
        entra_token_endpoint: str,
        bridge_client_id: str,
        binding: SignInBinding,
        post: PostForm = post_form,
    ) -> None:
        self._resolve = resolve_client
        self._redirects = bridge_redirect_uris
        self._scopes = scopes
        self._endpoint = entra_token_endpoint
        self._bridge_client_id = bridge_client_id
        self._binding = binding
        self._post = post

    def exchange(self, form: Mapping[str, str], *, resource: str, callback_uri: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one token request; never raises for a client's mistake."""
        try:
            upstream = self._upstream_form(form, resource=resource, callback_uri=callback_uri)
        except TokenError as exc:
            log.warning("Sign-in bridge token request refused: %s", exc.error)
            return exc.status, exc.body
        return self._relay(upstream, grant=form["grant_type"])

    def _upstream_form(self, form: Mapping[str, str], *, resource: str, callback_uri: str) -> dict[str, str]:
        grant = form.get("grant_type", "")
        if grant not in ("authorization_code", "refresh_token"):
            raise TokenError(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
        client_id = form.get("client_id", "")
        if not client_id:
            raise TokenError(401, "invalid_client", "client_id is required (public clients only)")
        if form.get("client_secret") or form.get("client_assertion"):
            raise TokenError(401, "invalid_client", "this server's clients are public: send no client secret")
        try:
            client = self._resolve(client_id)
        except ClientError as exc:
            raise TokenError(401, "invalid_client", exc.description) from None
        if "resource" in form and form["resource"] != resource:
            raise TokenError(400, "invalid_target", f"resource must be {resource}")
        try:
            scopes = self._scopes.to_entra(form.get("scope"))
        except ScopeError as exc:
            raise TokenError(400, "invalid_scope", str(exc)) from None

        upstream = {"client_id": self._bridge_client_id, "grant_type": grant, "scope": " ".join(scopes)}
        if grant == "authorization_code":
            for name in ("code", "redirect_uri", "code_verifier"):
                if not form.get(name):
                    raise TokenError(400, "invalid_request", f"{name} is required")
            redirect_uri, verifier = form["redirect_uri"], form["code_verifier"]
            if not client.allows_redirect(redirect_uri) or not is_deliverable(redirect_uri, self._redirects):
                raise TokenError(400, "invalid_grant", "redirect_uri is not one of the client's")
            if not _VERIFIER.fullmatch(verifier):
                raise TokenError(400, "invalid_grant", "code_verifier is malformed (RFC 7636 4.1)")
            # Entra saw the bridge's callback and a challenge bound to this client and redirect URI: a code
            # issued through another client, or redeemed with another verifier, fails Entra's PKCE check.
            upstream.update(code=form["code"], redirect_uri=callback_uri,
                            code_verifier=self._binding.entra_verifier(client_id, redirect_uri, s256(verifier)))
        else:
            if not form.get("refresh_token"):
                raise TokenError(400, "invalid_request", "refresh_token is required")
            upstream["refresh_token"] = form["refresh_token"]
        return upstream

    def _relay(self, upstream: dict[str, str], *, grant: str) -> tuple[int, dict[str, Any]]:
        try:
            status, raw = self._post(self._endpoint, upstream)
            body = json.loads(raw)
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as exc:
            log.error("Sign-in bridge: Entra's token endpoint did not answer usably (%s)", type(exc).__name__)
            return 503, {"error": "temporarily_unavailable", "error_description": "Microsoft Entra ID did not answer; "
                         "try again shortly"}
        if not isinstance(body, dict):
            body = {}
        if status == 200 and isinstance(body.get("access_token"), str):
            log.info("Sign-in bridge: %s grant answered by Entra", grant)
            return 200, {k: body[k] for k in _RESPONSE_FIELDS if k in body}
        error = body.get("error")
        error = error if isinstance(error, str) and error else "invalid_grant"
        description = body.get("error_description")
        description = description if isinstance(description, str) else ""
        if status >= 500:
            log.error("Sign-in bridge: Entra's token endpoint answered %d", status)
            return 503, {"error": "temporarily_unavailable", "error_description": "Microsoft Entra ID is unavailable; "
                         "try again shortly"}
        # The AADSTS code leads Entra's description: it is what the troubleshooting table is keyed on.
        log.warning("Sign-in bridge: Entra refused the %s grant: %s %s", grant, error, description[:12])
        return 400, {"error": error[:100], "error_description": (description or "refused by Microsoft Entra ID")[:1000]}
