"""Helpers shared by the issue-6 evidence suites (bad tokens, fuzzing, faults, concurrency, log hygiene).

The request builders (``request``, ``legacy``, ``call_modern``, ...) live in ``test_endpoint`` and are
re-exported here so the suites build requests exactly as the endpoint tests do. What is added here is
what several suites need on top: a checker for "a well-formed answer", private servers with their own
fake tenant and clock (isolated counters), and the detectors the log-hygiene checks use.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import azure.functions as func

from conftest import settings_env
from fake_entra import FakeEntra
from shared.entra.keys import JwksCache, _HttpJsonFetcher
from shared.entra.tokens import TokenValidator
from shared.features.tools import ToolRegistry
from shared.http.pipeline import McpServer
from shared.settings import load_settings
from test_endpoint import (  # noqa: F401  (re-exported for the suites)
    BASE,
    HOST,
    MODERN,
    OTHER_CLIENT,
    PRM_PATH,
    ROUTES,
    Handler,
    Reply,
    auth,
    call_modern,
    handler_for,
    legacy,
    meta,
    modern,
    request,
    rpc,
)

# The registered user function behind POST /mcp: what the Functions host calls.
MCP_FUNCTION: Handler = ROUTES["/mcp"][0]

# Statuses the endpoint may answer with. 5xx is never allowed outside the fault suite (where 503 is).
CLIENT_ERRORS = frozenset({400, 401, 403, 404, 405, 406, 413, 415, 421})
OK_STATUSES = frozenset({200, 202, 204}) | CLIENT_ERRORS

# Anything that looks like a compact JWS (header.payload.signature, header starting with '{"'): a token,
# an assertion or an id_token. Used to prove none of them ever reaches a log line or an answer.
JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


class Clock:
    """A settable monotonic clock for a private JwksCache (cool-downs and lifetimes without sleeping)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fast_fetcher(timeout: float = 0.5) -> _HttpJsonFetcher:
    """The product's HTTPS key fetcher with a short timeout, so slow-endpoint tests stay fast."""
    fetcher = _HttpJsonFetcher()
    fetcher.timeout = timeout
    return fetcher


def private_server(
    fake: FakeEntra,
    registry: ToolRegistry | None = None,
    *,
    clock: Callable[[], float] | None = None,
    fetcher: _HttpJsonFetcher | None = None,
    lifetime: float = 12 * 3600,
    refresh_cooldown: float = 300,
    **env: str,
) -> tuple[McpServer, JwksCache]:
    """An McpServer of its own (own key cache, own clock) pointing at ``fake``; returns it and its key cache."""
    from tools import tools as forker_tools

    settings = load_settings({**settings_env(fake), **env})
    options: dict[str, Any] = {"lifetime": lifetime, "refresh_cooldown": refresh_cooldown}
    if clock is not None:
        options["clock"] = clock
    if fetcher is not None:
        options["fetch_json"] = fetcher
    keys = JwksCache(settings.openid_configuration_url, **options)
    validator = TokenValidator.from_settings(settings, keys=keys)
    return McpServer(settings, registry or forker_tools, validator=validator), keys


def as_function(server: McpServer) -> Handler:
    """``server`` behind the same Functions adapter the registered function uses."""
    return handler_for(server)


def whoami_request(token: str, *, id: Any = 1, modern_protocol: bool = False) -> func.HttpRequest:
    """A ready-made ``func.HttpRequest`` calling whoami (for threads and benchmarks that reuse requests)."""
    if modern_protocol:
        body, headers = modern("tools/call", {"name": "whoami", "arguments": {}}, name="whoami", id=id)
    else:
        body, headers = rpc("tools/call", {"name": "whoami", "arguments": {}}, id=id), {
            "MCP-Protocol-Version": "2025-11-25"}
    all_headers = {"Host": HOST, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   **headers, **auth(token)}
    return func.HttpRequest(method="POST", url=f"{BASE}/mcp", headers=all_headers, params={},
                            body=json.dumps(body).encode())


def to_reply(response: func.HttpResponse) -> Reply:
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                 response.get_body() or b"")


# -- "a well-formed answer" ---------------------------------------------------------------------------------------


def _check_rpc_message(message: Any) -> None:
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    assert "id" in message, message
    assert ("result" in message) != ("error" in message), message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict) and isinstance(error.get("code"), int), error
        assert isinstance(error.get("message"), str), error
    else:
        assert isinstance(message["result"], dict), message


def assert_well_formed(reply: Reply, *, allowed: Iterable[int] = OK_STATUSES) -> None:
    """The answer is one the transport and the auth spec allow, in the shape they prescribe.

    * status in ``allowed`` (no 5xx unless a fault test allows 503);
    * never a session id, never a stack trace;
    * 202/204: no body; anything else: a JSON body that is either a JSON-RPC message (or a batch of them)
      or an OAuth error object ``{"error": str, "error_description": str}``;
    * 401: an RFC 6750 ``Bearer`` challenge with ``resource_metadata``.
    """
    assert reply.status in set(allowed), (reply.status, reply.body[:300])
    assert "mcp-session-id" not in reply.headers
    if reply.status in (202, 204):
        assert reply.body == b"", reply.body[:200]
        return
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    text = reply.body.decode("utf-8")
    assert "Traceback" not in text and 'File "' not in text, text[:300]
    payload = json.loads(text)
    if isinstance(payload, list):
        assert payload and reply.status == 200, payload
        for message in payload:
            _check_rpc_message(message)
    elif isinstance(payload, dict) and "jsonrpc" in payload:
        _check_rpc_message(payload)
    else:
        assert isinstance(payload, dict) and set(payload) == {"error", "error_description"}, payload
        assert isinstance(payload["error"], str) and isinstance(payload["error_description"], str), payload
    if reply.status == 401:
        challenge = reply.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and 'resource_metadata="' in challenge, challenge


# -- log capture ----------------------------------------------------------------------------------------------------


class RecordingHandler(logging.Handler):
    """Keeps every record and its fully formatted text (message, arguments, traceback, extras)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        parts = []
        for record in self.records:
            parts.append(self._formatter.format(record))  # includes exc_info and stack_info tracebacks
            parts.append(repr(record.args))
            parts.append(repr({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}))
        return "\n".join(parts)


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message", "asctime"}


@contextmanager
def capture_all_logs() -> Iterator[RecordingHandler]:
    """Every record from every logger, at DEBUG, for the duration (root level lowered, then restored)."""
    root = logging.getLogger()
    handler = RecordingHandler()
    saved = root.level
    # Loggers configured with their own level (some libraries set one) would filter DEBUG before propagation.
    quieted = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger) and lg.level > logging.DEBUG}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quieted:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)


def request_log_lines(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The structured per-request lines ("mcp request ...") of logger ``mcp.request``."""
    return [r for r in records if r.name == "mcp.request" and hasattr(r, "http_status")]
