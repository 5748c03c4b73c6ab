"""Downstream-API consent: the Entra authorize URL a user opens, and the page Entra sends them back to.

On-behalf-of cannot show a consent prompt (there is no user in the loop), so when Entra answers
``AADSTS65001`` the tool hands the user this URL. It is an ordinary authorization request for this
server's own app registration with the missing downstream scopes and ``prompt=consent``: Entra records
the grant when the user accepts, before it issues any code. The code that comes back to ``/consent`` is
therefore never needed, and this app never reads, redeems or logs it; the page only says "done, retry".
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from urllib.parse import urlencode

from shared.http.messages import HttpRequest, HttpResponse

CONSENT_PATH = "/consent"

# The only query value the page reflects, and only when it looks like an OAuth error code: the rest
# (error_description, code, state) is attacker-controllable or sensitive and is never echoed.
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")

# Removes ?code=... from the address bar and browser history; the CSP below allows exactly this script.
_SCRIPT = 'history.replaceState(null, "", location.pathname);'
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # The URL may carry an authorization code: never send it anywhere as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>
<script>{script}</script></head>
<body><h1>{title}</h1><p>{message}</p></body></html>
"""


def consent_url(
    *,
    authority_host: str,
    tenant_id: str,
    client_id: str,
    scopes: Iterable[str],
    public_base: str | None,
    login_hint: str | None = None,
) -> str:
    """The Entra authorize URL that asks the user to consent to ``scopes`` for this server's app.

    ``public_base`` is this server's public origin as the request reached it; the landing page is
    ``{public_base}/consent``, the redirect URI the infrastructure declares on the app registration.
    """
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": " ".join(scopes),
        "prompt": "consent",
        "response_mode": "query",
    }
    if public_base:
        params["redirect_uri"] = public_base.rstrip("/") + CONSENT_PATH
    if login_hint:
        params["login_hint"] = login_hint
    return f"{authority_host.rstrip('/')}/{tenant_id}/oauth2/v2.0/authorize?{urlencode(params)}"


def consent_page(request: HttpRequest) -> HttpResponse:
    """``GET /consent``: the page Entra redirects to after the consent prompt. Static, stores nothing.

    Only the request's method and its ``error`` query value are read.
    """
    # The Functions route admits only GET; this guards direct callers (and a route someone widens).
    if request.method.upper() != "GET":
        return HttpResponse(405, {"Allow": "GET", "Content-Type": "text/plain; charset=utf-8"}, b"Use GET.\n")
    error = request.query_params.get("error", "")
    if error:
        code = error if _ERROR_CODE.fullmatch(error) else "unknown_error"
        title = "Consent was not granted"
        message = (
            f"Microsoft Entra ID reported <code>{html.escape(code)}</code>. If you declined, nothing was changed. "
            "If your organization requires an administrator to approve this app, ask them to grant admin consent, "
            "then try the tool again."
        )
        status = 400
    else:
        title = "Consent recorded"
        message = "You can close this tab, go back to your MCP client and run the tool again."
        status = 200
    body = _PAGE.format(title=title, message=message, script=_SCRIPT).encode()
    return HttpResponse(status, dict(_HEADERS), body)
