"""The MCP transport and dispatch engine: stateless Streamable HTTP with JSON responses.

Works on plain values: an HTTP method, headers and body go in, an :class:`HttpResponse`
comes out. This module owns everything between the bytes and a method call: HTTP method,
media-type and size checks, JSON-RPC parsing and batches, era and version negotiation,
header-versus-body validation, error shaping, dispatch through ``shared.protocol.methods.METHODS``,
and decorating results (``resultType``, ``ttlMs``/``cacheScope``, server info). What each
method does lives in ``shared.protocol.methods``. It imports neither Azure Functions nor anything
about Entra; the verified caller arrives as an opaque object that is handed to tools
through their context.

Two eras are served side by side on the same endpoint:

* **2026-07-28** ("modern"): every request carries ``_meta`` with its protocol version
  and client capabilities, mirrored in ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name``
  headers that must agree with the body; no handshake; ``server/discover``; every result
  has ``resultType``; list results carry ``ttlMs``/``cacheScope``.
* **2025-11-25, 2025-06-18, 2025-03-26** ("legacy"): ``initialize`` negotiates a version,
  but no state is kept, so any request may arrive first; no ``Mcp-Session-Id`` is minted.

Routing headers in every era (issue 10). ``Mcp-Method``, ``Mcp-Name`` and ``Mcp-Param-*`` exist so that
a gateway can route and authorise without reading the body, and a gateway does not know which revision a
request speaks. So whenever one is present it must agree with the body, whatever the version: a legacy
client sends none of them and is never bothered, while a request that names one tool in ``Mcp-Name`` and
calls another in the body is refused in 2025-11-25 exactly as in 2026-07-28 (validating what is present
rather than refusing the headers outright keeps clients that send them early working). Only 2026-07-28
*requires* them. A mismatch is HTTP 400 with JSON-RPC -32020 (HeaderMismatch) in every era: the 2025
revisions define no code for it, and one condition gets one code. Mirrored values compare as text: a
boolean is ``true``/``false``, an integer its canonical decimal form (``10``, ``-3``; not ``+10``, ``1e1``,
``0010``, ``10.0`` or full-width digits), so a gateway that parses the header differently from this
server cannot be steered. A header for an argument the body omits (or sends as null), or one no parameter
of the tool declares, mirrors nothing and is a mismatch too. A JSON-RPC batch (2025-03-26 only) carries
several messages that one set of headers cannot describe: a batch with routing headers is refused whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from shared.features.completions import CompletionRegistry
from shared.features.prompts import PromptRegistry
from shared.features.resources import ResourceRegistry
from shared.features.tools import AuthorizationChallenge, Caller, DownstreamAuth, RequestInfo, ToolRegistry
from shared.features.versions import (
    BATCH_VERSION,
    DEFAULT_LEGACY_VERSION,
    LEGACY_VERSIONS,
    MODERN_VERSIONS,
    SUPPORTED_VERSIONS,
)
from shared.http.messages import HttpResponse
from shared.protocol import methods
from shared.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_VERSION,
    RpcError,
    dumps,
)
from shared.protocol.pagination import DEFAULT_PAGE_SIZE
from shared.protocol.request import LOG_LEVELS, Request
from shared.protocol.request_state import RequestStateCodec

log = logging.getLogger("mcp.protocol")

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_MESSAGES = 20
LIST_TTL_MS = 5 * 60 * 1000
# The tool list is the same for every user, but it sits behind authentication: keep
# shared caches (gateways) from serving it to anyone who has not signed in.
CACHE_SCOPE = "private"

# Methods whose request names a target that the Mcp-Name header must mirror.
_NAMED_TARGET = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# Lower-case prefix of the headers that mirror tool arguments (x-mcp-header).
_PARAM_PREFIX = "mcp-param-"

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class McpEngine:
    """The transport: checks and parses HTTP requests, negotiates the era, dispatches to ``shared.protocol.methods``.

    It owns the registries the methods read (it is their :class:`shared.protocol.methods.Server`).
    """

    def __init__(
        self,
        tools: ToolRegistry,
        *,
        server_name: str,
        server_version: str,
        instructions: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        resources: ResourceRegistry | None = None,
        prompts: PromptRegistry | None = None,
        completions: CompletionRegistry | None = None,
        request_state: RequestStateCodec | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.tools = tools
        self.resources = resources if resources is not None else ResourceRegistry()
        self.prompts = prompts if prompts is not None else PromptRegistry()
        self.completions = completions if completions is not None else CompletionRegistry()
        # Without a configured key each process makes its own: state from another instance is then
        # treated as stale and the round trip starts again (see shared.protocol.request_state).
        self.request_state = request_state or RequestStateCodec()
        self.page_size = page_size
        self.server_info = {"name": server_name, "version": server_version}
        self.instructions = instructions
        self.max_body_bytes = max_body_bytes

    # -- HTTP ----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        caller: Caller,
        downstream: DownstreamAuth | None = None,
    ) -> HttpResponse:
        """Answer one HTTP request to the MCP endpoint.

        ``headers`` keys may be in any case. Exceptions other than the tool registry's
        ``AuthorizationChallenge`` signals (which the caller turns into 401/403) never escape.
        """
        # RFC 9110: optional whitespace around a field value is not part of it.
        h = {k.lower(): v.strip(" \t") for k, v in headers.items()}
        if method.upper() != "POST":
            return _error_response(
                RpcError(INVALID_REQUEST, "Method not allowed: this MCP endpoint accepts POST only", status=405),
                None,
                extra_headers={"Allow": "POST"},
            )
        content_type = h.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return _error_response(
                RpcError(INVALID_REQUEST, "Unsupported Media Type: send Content-Type: application/json", status=415),
                None,
            )
        if not _accepts_json(h.get("accept")):
            return _error_response(
                RpcError(INVALID_REQUEST, "Not Acceptable: this server answers with application/json", status=406),
                None,
            )
        if len(body) > self.max_body_bytes:
            return _error_response(
                RpcError(INVALID_REQUEST, f"Request body larger than {self.max_body_bytes} bytes", status=413),
                None,
            )
        try:
            message = json.loads(body, parse_constant=_refuse_non_json_number)
        except (ValueError, RecursionError):
            return _error_response(RpcError(PARSE_ERROR, "Parse error: the body is not valid JSON", status=400), None)

        if isinstance(message, list):
            return self._handle_batch(message, h, caller, downstream)
        rpc = _describe(message)
        try:
            status, payload = self._handle_message(message, h, caller, downstream)
        except AuthorizationChallenge as challenge:
            # Let the caller's log line still say which method and tool asked for more.
            challenge.rpc = rpc
            raise
        if payload is None:
            return HttpResponse(status=status, rpc=rpc)
        return HttpResponse(status=status, headers=dict(JSON_HEADERS), body=dumps(payload), rpc=rpc)

    def _handle_batch(
        self, messages: list[Any], h: Mapping[str, str], caller: Caller, downstream: DownstreamAuth | None
    ) -> HttpResponse:
        # JSON-RPC batches existed only in BATCH_VERSION (also the version assumed without a header).
        version = h.get("mcp-protocol-version", DEFAULT_LEGACY_VERSION)
        if version != BATCH_VERSION or not messages:
            return _error_response(
                RpcError(INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported in this version",
                         status=400),
                None,
            )
        if len(messages) > MAX_BATCH_MESSAGES:
            # Refused whole rather than cut short (no request may go unanswered), and bounded so
            # one HTTP request cannot fan out into many downstream calls.
            return _error_response(
                RpcError(INVALID_REQUEST, f"Invalid Request: a batch holds at most {MAX_BATCH_MESSAGES} messages",
                         status=400),
                None,
            )
        if any(_is_routing_header(name) for name in h):
            # One Mcp-Method/Mcp-Name/Mcp-Param-* set cannot describe several messages (see the module doc).
            return _error_response(_mismatch("routing headers describe one message; a batch carries several"),
                                   None)
        results = []
        for message in messages:
            _, payload = self._handle_message(message, h, caller, downstream, in_batch=True)
            if payload is not None:
                results.append(payload)
        if not results:
            return HttpResponse(status=202)
        return HttpResponse(status=200, headers=dict(JSON_HEADERS), body=dumps(results))

    # -- JSON-RPC ------------------------------------------------------------------

    def _handle_message(
        self,
        message: Any,
        h: Mapping[str, str],
        caller: Caller,
        downstream: DownstreamAuth | None,
        *,
        in_batch: bool = False,
    ) -> tuple[int, Any]:
        """Return (HTTP status, JSON payload or None for an empty 202)."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error(RpcError(INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object", status=400),
                          None)
        has_id = "id" in message
        request_id = message.get("id")
        if "method" not in message:
            if ("result" in message or "error" in message) and has_id:
                # A response to a server-initiated request; this server sends none, so
                # there is nothing to match it with. Accept and drop it (legacy rule).
                return 202, None
            return _error(RpcError(INVALID_REQUEST, "Invalid Request: no method", status=400), _safe_id(request_id))
        if has_id and not _valid_id(request_id):
            return _error(RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer",
                                   status=400), None)
        method = message["method"]
        params = message.get("params", {})
        if not isinstance(method, str) or not method:
            return _error(RpcError(INVALID_REQUEST, "Invalid Request: method must be a string", status=400),
                          request_id if has_id else None)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _error(RpcError(INVALID_PARAMS, "Invalid params: params must be an object", status=400),
                          request_id if has_id else None)

        try:
            info = self._request_info(method, params, h, in_batch=in_batch)
        except RpcError as exc:
            return _error(exc, request_id if has_id else None)

        if not has_id:
            # Notifications (notifications/initialized, cancelled, ...) need no state here.
            return 202, None

        route = methods.METHODS.get(method)
        modern = info.protocol_version in MODERN_VERSIONS
        if route is not None and route.capability is not None and route.capability not in self.capabilities():
            route = None
        if route is None or (modern and not route.modern) or (not modern and not route.legacy):
            return _error(
                RpcError(METHOD_NOT_FOUND, f"Method not found: {method[:100]}", status=404 if modern else 200),
                request_id,
            )
        try:
            log_level = _log_level(params) if modern else None
        except RpcError as exc:
            return _error(exc, request_id)
        request = Request(method=method, params=params, info=info, caller=caller, downstream=downstream,
                          log_level=log_level)
        try:
            if method == "tools/call":
                self._check_tool_headers(params, h, required=modern)
            result = route.handler(self, request)
        except RpcError as exc:
            return _error(exc, request_id)
        except AuthorizationChallenge:
            raise
        except Exception:
            log.exception("Unhandled error in %s", method)
            return _error(RpcError(INTERNAL_ERROR, "Internal error"), request_id)
        if modern:
            result.setdefault("resultType", "complete")
            meta = result.setdefault("_meta", {})
            meta.setdefault(META_SERVER_INFO, self.server_info)
            if route.cacheable and result["resultType"] == "complete":
                result.setdefault("ttlMs", LIST_TTL_MS)
                result.setdefault("cacheScope", CACHE_SCOPE)
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": result}

    def _request_info(
        self, method: str, params: Mapping[str, Any], h: Mapping[str, str], *, in_batch: bool
    ) -> RequestInfo:
        """Decide the era and version of a request and check its headers against its body."""
        header_version = h.get("mcp-protocol-version")
        meta = params.get("_meta")
        meta_version = meta.get(META_VERSION) if isinstance(meta, dict) else None
        modern = meta_version is not None or (
            header_version is not None and header_version not in LEGACY_VERSIONS and not in_batch
        )
        if not modern:
            version = DEFAULT_LEGACY_VERSION if header_version is None else header_version
            if version not in LEGACY_VERSIONS:
                raise _unsupported(version)
            # Not required before 2026-07-28, but a gateway may have routed on them: held to the body.
            _check_routing_headers(method, params, h, required=False)
            return RequestInfo(protocol_version=version, client_info={}, client_capabilities={})

        if meta_version is None:
            if header_version not in MODERN_VERSIONS:
                raise _unsupported(header_version or "")
            raise RpcError(INVALID_PARAMS, f"Invalid params: _meta must carry {META_VERSION}", status=400)
        assert isinstance(meta, dict)  # meta_version was read from it
        if header_version is None:
            raise _mismatch("the MCP-Protocol-Version header is required")
        if header_version != meta_version:
            raise _mismatch("the MCP-Protocol-Version header does not match _meta")
        if meta_version not in MODERN_VERSIONS:
            raise _unsupported(str(meta_version)[:50])
        capabilities = meta.get(META_CAPABILITIES)
        if not isinstance(capabilities, dict):
            raise RpcError(INVALID_PARAMS, f"Invalid params: _meta must carry {META_CAPABILITIES}", status=400)
        client_info = meta.get(META_CLIENT_INFO)
        if client_info is not None and not isinstance(client_info, dict):
            raise RpcError(INVALID_PARAMS, f"Invalid params: {META_CLIENT_INFO} must be an object", status=400)

        _check_routing_headers(method, params, h, required=True)
        return RequestInfo(
            protocol_version=meta_version,
            client_info=client_info or {},
            client_capabilities=capabilities,
        )

    # -- what the methods see ------------------------------------------------------

    def capabilities(self, *, legacy: bool = False) -> dict[str, Any]:
        return methods.capabilities(self, legacy=legacy)

    def _check_tool_headers(self, params: Mapping[str, Any], h: Mapping[str, str], *, required: bool) -> None:
        """tools/call, any era: the tool's Mcp-Param-* headers must mirror its arguments.

        Required in 2026-07-28 (for each argument the body carries), checked when present before; see the
        module docstring. Checked only for a known tool, so an invalid or unknown name stays the method's
        own error.
        """
        name = params.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is not None:
            _check_param_headers(tool.definition.get("inputSchema"), params.get("arguments"), h, required=required)


def _header_params(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(property path, x-mcp-header name, property type) for each parameter mirrored into a header.

    Only chains of ``properties`` count (2026-07-28 streamable HTTP, "Custom Headers from Tool Parameters").
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return
    for key, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        header = prop.get("x-mcp-header")
        if isinstance(header, str) and header:
            yield (*path, key), header, prop.get("type")
        yield from _header_params(prop, (*path, key))


def _check_routing_headers(method: str, params: Mapping[str, Any], h: Mapping[str, str], *, required: bool) -> None:
    """Mcp-Method and Mcp-Name must agree with the body (400, -32020); ``required`` in 2026-07-28 only.

    Mcp-Param-* headers are checked against the tool's arguments by ``_check_param_headers``; on any other
    method there is no parameter for them to mirror.
    """
    header_method = h.get("mcp-method")
    if header_method is None:
        if required:
            raise _mismatch("the Mcp-Method header is required")
    elif header_method != method:
        raise _mismatch("the Mcp-Method header does not match the body's method")
    target_field = _NAMED_TARGET.get(method)
    if target_field is not None:
        header_name = h.get("mcp-name")
        if header_name is None:
            if required:
                raise _mismatch("the Mcp-Name header is required for " + method)
        else:
            decoded = decode_header_value(header_name)
            if decoded is None:
                raise _mismatch("the Mcp-Name header is malformed")
            if decoded != params.get(target_field):
                raise _mismatch(f"the Mcp-Name header does not match the body's {target_field}")
    if method != "tools/call" and any(name.startswith(_PARAM_PREFIX) for name in h):
        raise _mismatch(f"Mcp-Param-* headers mirror tool arguments; {method[:100]} has none")


def _is_routing_header(name: str) -> bool:
    return name in ("mcp-method", "mcp-name") or name.startswith(_PARAM_PREFIX)


def _check_param_headers(schema: Any, arguments: Any, h: Mapping[str, str], *, required: bool = True) -> None:
    """Mcp-Param-{Name} headers must mirror the body's values (400, -32020, on any mismatch).

    ``required`` (2026-07-28): each argument the body carries needs its header. Before that a header is
    only checked when present. In every era a header must name one of the tool's mirrored parameters and
    that parameter must have a value in the body: a header for an omitted or null argument mirrors nothing.
    """
    declared: set[str] = set()
    for path, header, kind in _header_params(schema):
        name = _PARAM_PREFIX + header.lower()
        declared.add(name)
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        raw = h.get(name)
        if raw is None:
            if value is not None and required:
                raise _mismatch(f"the Mcp-Param-{header} header is required")
            continue  # The client omits the header for absent or null values.
        if value is None:
            raise _mismatch(f"the Mcp-Param-{header} header mirrors an argument the body does not carry")
        if any(not (c == "\t" or " " <= c <= "~") for c in raw):
            raise _mismatch(f"the Mcp-Param-{header} header contains invalid characters")
        decoded = decode_header_value(raw)
        if decoded is None:
            raise _mismatch(f"the Mcp-Param-{header} header is malformed")
        expected = _header_text(value, kind)
        if expected is None or decoded != expected:
            raise _mismatch(f"the Mcp-Param-{header} header does not match the body")
    for name in h:
        if name.startswith(_PARAM_PREFIX) and name not in declared:
            raise _mismatch(f"the {name[:100]} header names no parameter of this tool")


def _header_text(value: Any, kind: Any) -> str | None:
    """The one text a client may send to mirror ``value`` (before sentinel encoding), or None if none can.

    Comparing text rather than parsed numbers leaves no second reading for a gateway to disagree on:
    ``+10``, ``1e1``, ``0010``, ``10.0``, ``1_0`` and full-width digits are not ``10``.
    """
    if kind is None:  # only hand-written schemas; registration requires a type
        kind = {bool: "boolean", int: "integer", float: "integer"}.get(type(value), "string")
    if kind == "boolean":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if kind == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))  # 10.0 is the integer 10 in JSON Schema; the header is still "10"
        return None
    return value if isinstance(value, str) else None


def _log_level(params: Mapping[str, Any]) -> str | None:
    meta = params.get("_meta")
    level = meta.get(META_LOG_LEVEL) if isinstance(meta, dict) else None
    if level is not None and level not in LOG_LEVELS:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {META_LOG_LEVEL} must be one of " + ", ".join(LOG_LEVELS),
                       status=400)
    return level


def _refuse_non_json_number(literal: str) -> Any:
    # NaN and Infinity are Python's extensions, not JSON (RFC 8259): a parse error like any other.
    raise ValueError(f"{literal} is not JSON")


def decode_header_value(value: str) -> str | None:
    """Decode an ``=?base64?...?=`` sentinel-encoded header value; plain values pass through."""
    if value.startswith("=?base64?") and value.endswith("?=") and len(value) >= 11:
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return value


def _describe(message: Any) -> dict[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return {}
    params = message.get("params")
    target = (params.get("name") or params.get("uri")) if isinstance(params, dict) else None
    rpc = {"method": message["method"][:100]}
    if isinstance(target, str):
        rpc["name"] = target[:200]
    return rpc


def _unsupported(requested: str) -> RpcError:
    return RpcError(
        UNSUPPORTED_VERSION,
        "Unsupported protocol version",
        data={"supported": list(SUPPORTED_VERSIONS), "requested": requested},
        status=400,
    )


def _mismatch(why: str) -> RpcError:
    return RpcError(HEADER_MISMATCH, f"Header mismatch: {why}", status=400)


def _valid_id(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= 256) or (type(value) is int and abs(value) < 2**63)


def _safe_id(value: Any) -> Any:
    return value if _valid_id(value) else None


def _accepts_json(accept: str | None) -> bool:
    if accept is None:
        return True
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*", ""):
            return True
    return False


def _error(exc: RpcError, request_id: Any) -> tuple[int, dict[str, Any]]:
    return exc.status, {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}


def _error_response(exc: RpcError, request_id: Any, extra_headers: Mapping[str, str] | None = None) -> HttpResponse:
    status, payload = _error(exc, request_id)
    return HttpResponse(status=status, headers={**JSON_HEADERS, **(extra_headers or {})}, body=dumps(payload))
