"""The bridge's two HTML pages: the consent page and the error page. Every value shown is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping

from shared.bridge.clients import Client
from shared.http.messages import HttpResponse

# No script, no framing (clickjacking the Allow button), no caching, no referrer carrying the query to another
# site. "same-origin", not "no-referrer": under no-referrer a browser sends `Origin: null` with the consent form,
# and the form's own origin is what the bridge checks.
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"
          "button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.75rem}.muted{color:#555;font-size:.9rem}")


def _page(status: int, title: str, body: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
    document = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<meta name=\"viewport\" content=\"width=device-width\"><style>{_STYLE}</style></head>"
                f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HttpResponse(status, {**PAGE_HEADERS, **(headers or {})}, document.encode("utf-8", "replace"))


def error_page(status: int, message: str) -> HttpResponse:
    """Shown instead of redirecting when the redirect URI itself cannot be trusted."""
    return _page(status, "Sign-in cannot continue",
                 f"<p>{html.escape(message)}</p><p class=\"muted\">Nothing was sent anywhere. Close this page and "
                 "start the sign-in again from your app; if it keeps happening, tell the server's operator.</p>")


def consent_page(
    *,
    client: Client,
    redirect_uri: str,
    server_name: str,
    resource: str,
    action: str,
    fields: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    e = html.escape
    if client.vouched_by:
        who = f"Its identity is published by <strong>{e(client.vouched_by)}</strong>."
    else:
        who = "It registered itself with this server: its name is <strong>not verified</strong>."
    hidden = "".join(f"<input type=\"hidden\" name=\"{e(k)}\" value=\"{e(v)}\">" for k, v in fields.items())
    body = (
        f"<p><strong>{e(client.name)}</strong> wants to sign you in to <strong>{e(server_name)}</strong> "
        f"(<code>{e(resource)}</code>) with your Microsoft account, and to call its tools as you.</p>"
        f"<p>{who} After you sign in you will be sent to <code>{e(redirect_uri)}</code>.</p>"
        "<p>Allow it only if you started this sign-in yourself, from an app you trust.</p>"
        f"<form method=\"post\" action=\"{e(action)}\">{hidden}"
        "<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>"
        "<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>"
        f"<p class=\"muted\">Client ID: <code>{e(client.client_id[:200])}</code></p>"
    )
    return _page(200, "Allow this app to sign you in?", body, headers)
