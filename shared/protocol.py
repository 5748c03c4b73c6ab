"""The MCP protocol engine: stateless Streamable HTTP with JSON responses.

Works on plain values: an HTTP method, headers and body go in, an :class:`HttpResponse`
comes out. It imports neither Azure Functions nor anything about Entra; the verified
caller arrives as an opaque object that is handed to tools through their context.

Two eras are served side by side on the same endpoint:

* **2026-07-28** ("modern"): every request carries ``_meta`` with its protocol version
  and client capabilities, mirrored in ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name``
  headers that must agree with the body; no handshake; ``server/discover``; every result
  has ``resultType``; list results carry ``ttlMs``/``cacheScope``.
* **2025-11-25, 2025-06-18, 2025-03-26** ("legacy"): ``initialize`` negotiates a version,
  but no state is kept, so any request may arrive first; no ``Mcp-Session-Id`` is minted.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .completions import CompletionRegistry
from .mrtr import InputRequired, client_supports
from .prompts import PromptArgumentError, PromptRegistry, UnknownPromptError
from .request_state import InvalidRequestState, RequestStateCodec, StaleRequestState
from .resources import ResourceNotFound, ResourceRegistry
from .tools import (
    AuthorizationChallenge,
    Caller,
    DownstreamAuth,
    RequestInfo,
    ToolContext,
    ToolRegistry,
    UnknownToolError,
)

log = logging.getLogger("mcp.protocol")

MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SUPPORTED_VERSIONS = MODERN_VERSIONS + LEGACY_VERSIONS
# A legacy request without MCP-Protocol-Version predates the header (2025-03-26).
DEFAULT_LEGACY_VERSION = "2025-03-26"
LATEST_LEGACY_VERSION = LEGACY_VERSIONS[0]

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022
# Resource not found before 2026-07-28 (2026-07-28 uses -32602 and forbids -32002).
LEGACY_RESOURCE_NOT_FOUND = -32002
DEFAULT_PAGE_SIZE = 100
# The only requests that may be answered with an InputRequiredResult (MRTR "Supported Requests").
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
LIST_TTL_MS = 5 * 60 * 1000
# The tool list is the same for every user, but it sits behind authentication: keep
# shared caches (gateways) from serving it to anyone who has not signed in.
CACHE_SCOPE = "private"

# Methods whose request names a target that the Mcp-Name header must mirror.
_NAMED_TARGET = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # What was asked (JSON-RPC method and tool/prompt/resource name), for the request log.
    rpc: Mapping[str, str] | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class RpcError(Exception):
    """A JSON-RPC error, with the HTTP status the transport prescribes for it."""

    def __init__(self, code: int, message: str, *, data: Any = None, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True)
class Request:
    """One JSON-RPC request as the handlers see it."""

    method: str
    params: Mapping[str, Any]
    info: RequestInfo
    caller: Caller
    downstream: DownstreamAuth | None
    log_level: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def modern(self) -> bool:
        return self.info.protocol_version in MODERN_VERSIONS

    def context(self, input_responses: Mapping[str, Any] | None = None, state: Any = None) -> ToolContext:
        return ToolContext(caller=self.caller, request=self.info, downstream=self.downstream,
                           input_responses=input_responses or {}, state=state, log_level=self.log_level)


Handler = Callable[[Request], dict[str, Any]]


@dataclass(frozen=True)
class _Route:
    handler: Handler
    modern: bool = True
    legacy: bool = True
    cacheable: bool = False


class McpEngine:
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
        # treated as stale and the round trip starts again (see shared.request_state).
        self.request_state = request_state or RequestStateCodec()
        self.page_size = page_size
        self.server_info = {"name": server_name, "version": server_version}
        self.instructions = instructions
        self.max_body_bytes = max_body_bytes
        self._routes: dict[str, _Route] = {
            "initialize": _Route(self._initialize, modern=False),
            "ping": _Route(lambda _req: {}, modern=False),
            "logging/setLevel": _Route(self._set_level, modern=False),
            "server/discover": _Route(self._discover, legacy=False, cacheable=True),
            "tools/list": _Route(self._tools_list, cacheable=True),
            "tools/call": _Route(self._tools_call),
            "resources/list": _Route(self._resources_list, cacheable=True),
            "resources/templates/list": _Route(self._templates_list, cacheable=True),
            "resources/read": _Route(self._resources_read, cacheable=True),
            "prompts/list": _Route(self._prompts_list, cacheable=True),
            "prompts/get": _Route(self._prompts_get),
            "completion/complete": _Route(self._complete),
        }
        # A method whose capability this server does not offer is answered as unknown.
        self._route_capability = {
            "resources/list": "resources", "resources/templates/list": "resources", "resources/read": "resources",
            "prompts/list": "prompts", "prompts/get": "prompts", "completion/complete": "completions",
        }

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
            message = json.loads(body)
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
        return HttpResponse(status=status, headers=dict(JSON_HEADERS), body=_dumps(payload), rpc=rpc)

    def _handle_batch(
        self, messages: list[Any], h: Mapping[str, str], caller: Caller, downstream: DownstreamAuth | None
    ) -> HttpResponse:
        # JSON-RPC batches existed only in 2025-03-26 (the version assumed without a header).
        version = h.get("mcp-protocol-version", DEFAULT_LEGACY_VERSION)
        if version != "2025-03-26" or not messages:
            return _error_response(
                RpcError(INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported in this version",
                         status=400),
                None,
            )
        results = []
        for message in messages[:100]:
            _, payload = self._handle_message(message, h, caller, downstream, in_batch=True)
            if payload is not None:
                results.append(payload)
        if not results:
            return HttpResponse(status=202)
        return HttpResponse(status=200, headers=dict(JSON_HEADERS), body=_dumps(results))

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

        route = self._routes.get(method)
        modern = info.protocol_version in MODERN_VERSIONS
        needs = self._route_capability.get(method)
        if needs is not None and needs not in self.capabilities():
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
                          log_level=log_level, headers=h)
        try:
            result = route.handler(request)
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
            return RequestInfo(protocol_version=version, client_info={}, client_capabilities={})

        if meta_version is None:
            if header_version not in MODERN_VERSIONS:
                raise _unsupported(header_version or "")
            raise RpcError(INVALID_PARAMS, f"Invalid params: _meta must carry {META_VERSION}", status=400)
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

        header_method = h.get("mcp-method")
        if header_method is None:
            raise _mismatch("the Mcp-Method header is required")
        if header_method != method:
            raise _mismatch("the Mcp-Method header does not match the body's method")
        target_field = _NAMED_TARGET.get(method)
        if target_field is not None:
            header_name = h.get("mcp-name")
            if header_name is None:
                raise _mismatch("the Mcp-Name header is required for " + method)
            decoded = decode_header_value(header_name)
            if decoded is None:
                raise _mismatch("the Mcp-Name header is malformed")
            if decoded != params.get(target_field):
                raise _mismatch(f"the Mcp-Name header does not match the body's {target_field}")
        return RequestInfo(
            protocol_version=meta_version,
            client_info=client_info or {},
            client_capabilities=capabilities,
        )

    # -- methods -------------------------------------------------------------------

    def capabilities(self, *, legacy: bool = False) -> dict[str, Any]:
        capabilities: dict[str, Any] = {"tools": {"listChanged": False}}
        if len(self.resources):
            capabilities["resources"] = {"subscribe": False, "listChanged": False}
        if len(self.prompts):
            capabilities["prompts"] = {"listChanged": False}
        if len(self.prompts) or self.resources.template_definitions():
            capabilities["completions"] = {}
        if legacy:
            # logging/setLevel is answered; no notifications/message is ever sent (JSON responses only).
            capabilities["logging"] = {}
        return capabilities

    def _initialize(self, request: Request) -> dict[str, Any]:
        requested = request.params.get("protocolVersion")
        version = requested if requested in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": self.capabilities(legacy=True),
            "serverInfo": self.server_info,
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    def _discover(self, request: Request) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": self.capabilities(),
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    def _tools_list(self, request: Request) -> dict[str, Any]:
        return self._page(request, "tools", self.tools.definitions())

    def _tools_call(self, request: Request) -> dict[str, Any]:
        name = request.params.get("name")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'name' must be a string")
        arguments = request.params.get("arguments")
        tool = self.tools.get(name)
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:128]}")
        if request.modern:
            _check_param_headers(tool.definition.get("inputSchema"), arguments, request.headers)

        def run(ctx: ToolContext) -> dict[str, Any]:
            try:
                return self.tools.call(name, arguments, ctx)
            except UnknownToolError:
                raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:128]}") from None

        return self._with_input(request, f"tools/call:{name}", run)

    def _set_level(self, request: Request) -> dict[str, Any]:
        # Accepted and validated; there is no session to remember it in, and no notification
        # stream to filter: this server never sends notifications/message.
        if request.params.get("level") not in LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, "Invalid params: level must be one of " + ", ".join(LOG_LEVELS))
        return {}

    def _resources_list(self, request: Request) -> dict[str, Any]:
        return self._page(request, "resources", self.resources.definitions())

    def _templates_list(self, request: Request) -> dict[str, Any]:
        return self._page(request, "resourceTemplates", self.resources.template_definitions())

    def _resources_read(self, request: Request) -> dict[str, Any]:
        uri = request.params.get("uri")
        if not isinstance(uri, str) or not uri:
            raise RpcError(INVALID_PARAMS, "Invalid params: 'uri' must be a string")
        try:
            self.resources.resolve(uri)
        except ResourceNotFound:
            code = INVALID_PARAMS if request.modern else LEGACY_RESOURCE_NOT_FOUND
            raise RpcError(code, "Resource not found", data={"uri": uri}) from None
        return self._with_input(request, f"resources/read:{uri}", lambda ctx: self.resources.read(uri, ctx))

    def _prompts_list(self, request: Request) -> dict[str, Any]:
        return self._page(request, "prompts", self.prompts.definitions())

    def _prompts_get(self, request: Request) -> dict[str, Any]:
        name = request.params.get("name")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'name' must be a string")
        if self.prompts.get_prompt(name) is None:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown prompt: {name[:128]}")
        arguments = request.params.get("arguments")

        def run(ctx: ToolContext) -> dict[str, Any]:
            try:
                return self.prompts.get(name, arguments, ctx)
            except (UnknownPromptError, PromptArgumentError) as exc:
                raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None

        return self._with_input(request, f"prompts/get:{name}", run)

    def _complete(self, request: Request) -> dict[str, Any]:
        ref = request.params.get("ref")
        argument = request.params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'ref' and 'argument' must be objects")
        arg_name, value = argument.get("name"), argument.get("value")
        if not isinstance(arg_name, str) or not isinstance(value, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: argument needs string 'name' and 'value'")
        context = request.params.get("context")
        given = context.get("arguments") if isinstance(context, dict) else None
        given = {k: v for k, v in given.items() if isinstance(v, str)} if isinstance(given, dict) else {}
        kind = ref.get("type")
        if kind == "ref/prompt":
            target = ref.get("name")
            if not isinstance(target, str) or self.prompts.get_prompt(target) is None:
                raise RpcError(INVALID_PARAMS, "Invalid params: unknown prompt")
        elif kind == "ref/resource":
            target = ref.get("uri")
            if not isinstance(target, str) or (
                self.resources.get_template(target) is None
                and not any(d["uri"] == target for d in self.resources.definitions())
            ):
                raise RpcError(INVALID_PARAMS, "Invalid params: unknown resource or template")
        else:
            raise RpcError(INVALID_PARAMS, "Invalid params: ref.type must be ref/prompt or ref/resource")
        return {"completion": self.completions.complete(kind, target, arg_name, value, given)}

    # -- pagination ----------------------------------------------------------------

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """One page of a list result; cursors are opaque to clients (base64url JSON of the offset)."""
        cursor = request.params.get("cursor")
        start = 0
        if cursor is not None:
            start = _decode_cursor(cursor, key)
            if start > len(items):
                raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor")
        end = start + self.page_size
        result: dict[str, Any] = {key: items[start:end]}
        if end < len(items):
            result["nextCursor"] = _encode_cursor(key, end)
        return result

    # -- multi round-trip requests ------------------------------------------------------

    def _with_input(
        self, request: Request, binding: str, run: Callable[[ToolContext], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run a tool, prompt or resource function that may raise InputRequired (MRTR).

        In 2026-07-28 the retry's inputResponses and verified requestState reach the function through
        its context. Legacy revisions cannot carry either over stateless JSON: a function that asks
        for input there is reported as needing a newer client.
        """
        subject = _subject(request.caller)
        responses: Mapping[str, Any] = {}
        state: Any = None
        if request.modern:
            responses = _input_responses(request.params)
            token = request.params.get("requestState")
            if token is not None:
                try:
                    state = self.request_state.open(token, binding=binding, subject=subject)
                except StaleRequestState:
                    # Sealed by another instance's (or a rotated) key: start the round trip again.
                    log.info("Stale requestState for %s; asking again", binding.split(":", 1)[0])
                    responses = {}
                except InvalidRequestState as exc:
                    raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
        try:
            return run(request.context(responses, state))
        except InputRequired as signal:
            if not request.modern:
                return self._legacy_input_required(request, signal)
            capabilities = request.info.client_capabilities
            missing = [c for c in signal.required_capabilities() if not client_supports(capabilities, c)]
            if missing:
                raise RpcError(
                    MISSING_CLIENT_CAPABILITY,
                    "Missing required client capability: " + ", ".join(".".join(c) for c in missing),
                    data={"requiredCapabilities": _capability_object(missing)},
                    status=400,
                ) from None
            result: dict[str, Any] = {"resultType": "input_required"}
            if signal.requests:
                result["inputRequests"] = {key: r.to_json() for key, r in signal.requests.items()}
            # Always sealed, even without function state: it binds the round to this caller and request.
            result["requestState"] = self.request_state.seal(signal.state, binding=binding, subject=subject)
            return result

    def _legacy_input_required(self, request: Request, signal: InputRequired) -> dict[str, Any]:
        what = ", ".join(sorted({r.method for r in signal.requests.values()})) or "a retry"
        message = (f"This request needs input from the client ({what}), which protocol version "
                   f"{request.info.protocol_version} cannot carry on this stateless server. "
                   "Use a client that speaks MCP 2026-07-28.")
        if request.method == "tools/call":
            return {"content": [{"type": "text", "text": message}], "isError": True}
        raise RpcError(INVALID_REQUEST, message)


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


def _check_param_headers(schema: Any, arguments: Any, h: Mapping[str, str]) -> None:
    """Mcp-Param-{Name} headers must mirror the body's values (400, -32020, on any mismatch)."""
    for path, header, kind in _header_params(schema):
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        raw = h.get("mcp-param-" + header.lower())
        if value is None:
            continue  # The client omits the header for absent or null values.
        if raw is None:
            raise _mismatch(f"the Mcp-Param-{header} header is required")
        if any(not (c == "\t" or " " <= c <= "~") for c in raw):
            raise _mismatch(f"the Mcp-Param-{header} header contains invalid characters")
        decoded = decode_header_value(raw)
        if decoded is None:
            raise _mismatch(f"the Mcp-Param-{header} header is malformed")
        if isinstance(value, bool):
            matches = decoded == ("true" if value else "false")
        elif isinstance(value, int) and kind != "string":
            try:
                matches = float(decoded) == value
            except ValueError:
                matches = False
        else:
            matches = isinstance(value, str) and decoded == value
        if not matches:
            raise _mismatch(f"the Mcp-Param-{header} header does not match the body")


def _log_level(params: Mapping[str, Any]) -> str | None:
    meta = params.get("_meta")
    level = meta.get(META_LOG_LEVEL) if isinstance(meta, dict) else None
    if level is not None and level not in LOG_LEVELS:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {META_LOG_LEVEL} must be one of " + ", ".join(LOG_LEVELS),
                       status=400)
    return level


def _input_responses(params: Mapping[str, Any]) -> Mapping[str, Any]:
    if "inputResponses" not in params:
        return {}
    responses = params["inputResponses"]
    if not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values()):
        raise RpcError(INVALID_PARAMS, "Invalid params: inputResponses must map keys to result objects")
    return responses


def _subject(caller: Caller) -> str:
    """Who requestState is bound to: the caller's tenant and object ID (sub for callers without oid)."""
    claims = getattr(caller, "claims", None) or {}
    return f"{claims.get('tid', '')}/{claims.get('oid') or claims.get('sub', '')}"


def _capability_object(paths: list[tuple[str, ...]]) -> dict[str, Any]:
    required: dict[str, Any] = {}
    for path in paths:
        node = required
        for part in path:
            node = node.setdefault(part, {})
    return required


def _encode_cursor(kind: str, offset: int) -> str:
    raw = json.dumps({"k": kind, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: Any, kind: str) -> int:
    try:
        if not isinstance(cursor, str) or len(cursor) > 200:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["o"]
        if data["k"] != kind or type(offset) is not int or offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor") from None


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
    return HttpResponse(status=status, headers={**JSON_HEADERS, **(extra_headers or {})}, body=_dumps(payload))


def error_body(code: int, message: str) -> bytes:
    """A JSON-RPC error without an id, for refusals made before the body is read."""
    return _dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def _dumps(payload: Any) -> bytes:
    # default=str: a tool returning an odd value must never turn into a 500. ensure_ascii: a lone
    # surrogate echoed from the request (an id, a name) has no UTF-8 form but does have a JSON escape.
    return json.dumps(payload, separators=(",", ":"), default=str).encode("ascii")
