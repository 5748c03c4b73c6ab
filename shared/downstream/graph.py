"""A tiny Microsoft Graph client for tools: on-behalf-of token, bounded timeouts, polite retries.

    from shared.downstream import graph

    me = graph.get(ctx, "/me", scopes=["User.Read"])

The token comes from ``ctx.downstream_token`` (on-behalf-of), never from the MCP client. Throttling
(429) and outages (5xx, timeouts) are retried within a bounded budget, honouring ``Retry-After``;
anything else becomes a ToolError the model can relay. Scopes are short Graph permission names;
the resource is derived from GRAPH_API_BASE_URL so sovereign clouds get their own Graph audience.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from shared.downstream.retry import RetryBudget, parse_retry_after, try_again_hint
from shared.features.tools import ToolContext, ToolError
from shared.settings import DEFAULT_GRAPH_API_BASE_URL

log = logging.getLogger("mcp.graph")

__all__ = ["GraphClient", "get", "graph_scope"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_PATH_HEAD = re.compile(r"[A-Za-z0-9_.$-]{1,64}")
_local = threading.local()  # one requests.Session per thread: connection reuse without sharing a Session


def graph_scope(base_url: str, permission: str) -> str:
    """``User.Read`` -> ``https://graph.microsoft.com/User.Read`` for the cloud of ``base_url``."""
    if "/" in permission:
        return permission  # already a full scope
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/{permission}"


class GraphClient:
    """GET requests to Microsoft Graph with a bearer token; retries bounded by a RetryBudget."""

    def __init__(self, base_url: str = DEFAULT_GRAPH_API_BASE_URL, *, budget: RetryBudget | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.budget = budget or RetryBudget()

    def get(self, path: str, token: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``{base_url}{path}`` and return the JSON object; ToolError on failure."""
        import requests

        url = self.base_url + "/" + path.lstrip("/")
        where = _loggable_path(path)
        session = _session()
        deadline = time.monotonic() + self.budget.total_seconds
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = session.get(
                    url,
                    params=dict(params or {}),
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=(self.budget.connect_timeout, self.budget.read_timeout),
                    allow_redirects=False,  # a redirect would carry the token elsewhere
                )
            except requests.Timeout:
                problem = "Microsoft Graph did not answer in time."
            except requests.RequestException as exc:
                problem = f"Could not reach Microsoft Graph ({type(exc).__name__})."
            else:
                if response.status_code < 300:
                    return _json_object(response)
                if response.status_code not in _RETRY_STATUSES:
                    raise ToolError(_graph_error(response))
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                problem = _graph_error(response)
            delay = self.budget.next_delay(attempt, retry_after, deadline)
            if delay is None:
                log.error("Microsoft Graph GET %s failed after %d attempt(s): %s", where, attempt, problem)
                raise ToolError(problem + try_again_hint(retry_after))
            log.warning("Microsoft Graph GET %s failed (attempt %d), retrying in %.1f s: %s",
                        where, attempt, delay, problem)
            time.sleep(delay)


def get(
    ctx: ToolContext,
    path: str,
    *,
    scopes: Iterable[str] = ("User.Read",),
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """GET a Graph resource as the calling user, e.g. ``graph.get(ctx, "/me", scopes=["User.Read"])``."""
    # The on-behalf-of handle carries GRAPH_API_BASE_URL and the retry budget; any other DownstreamAuth
    # (a custom one, a test double) gets the public cloud and the default budget.
    base_url = getattr(ctx.downstream, "graph_base_url", None) or DEFAULT_GRAPH_API_BASE_URL
    token = ctx.downstream_token(*(graph_scope(base_url, s) for s in scopes))
    return GraphClient(base_url, budget=getattr(ctx.downstream, "budget", None)).get(path, token, params=params)


def _session() -> Any:
    session = getattr(_local, "session", None)
    if session is None:
        import requests

        session = _local.session = requests.Session()
    return session


def _loggable_path(path: str) -> str:
    """``/users/alice@contoso.com/photo`` -> ``/users/...``: anything after the first segment (an id, a UPN,
    ``users('alice@contoso.com')``, a query) may be user data, so only the segment's leading name is kept."""
    trimmed = path.lstrip("/")
    head = _PATH_HEAD.match(trimmed)
    name = head.group(0) if head else ""
    return "/" + name + ("..." if len(trimmed) > len(name) else "")


def _json_object(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ToolError("Microsoft Graph returned an unexpected answer (not a JSON object).")
    return body


def _graph_error(response: Any) -> str:
    """Graph's error code and message (they never contain tokens), e.g. ``403 Authorization_RequestDenied``."""
    code = message = ""
    try:
        error = response.json().get("error") or {}
        code, message = str(error.get("code") or ""), str(error.get("message") or "")
    except (ValueError, AttributeError):
        pass
    status = response.status_code
    detail = f"{status} {code}".strip() + (f": {message[:200]}" if message else "")
    if status == 429:
        return f"Microsoft Graph is throttling requests ({detail})."
    if status >= 500:
        return f"Microsoft Graph is unavailable ({detail})."
    if status in (401, 403):
        return f"Microsoft Graph refused the request ({detail}). The signed-in user may lack access to it."
    return f"Microsoft Graph request failed ({detail})."
