"""The MCP methods this server implements, and the table the dispatcher routes by.

Each method is a function of the server's registries (:class:`Server`) and one validated
:class:`~shared.protocol.request.Request`, returning the JSON-RPC ``result`` object or raising
:class:`~shared.protocol.jsonrpc.RpcError`. Transport concerns (HTTP checks, version negotiation, header
mirroring, result decoration) stay in ``shared.protocol.engine``, which owns the registries and passes
itself in as the :class:`Server`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.features.completions import CompletionRegistry
from shared.features.prompts import PromptArgumentError, PromptRegistry
from shared.features.resources import ResourceNotFound, ResourceRegistry
from shared.features.tools import ToolContext, ToolRegistry
from shared.features.versions import LATEST_LEGACY_VERSION, LEGACY_VERSIONS, SUPPORTED_VERSIONS
from shared.protocol.input_rounds import run_with_input
from shared.protocol.jsonrpc import INVALID_PARAMS, LEGACY_RESOURCE_NOT_FOUND, RpcError
from shared.protocol.pagination import page
from shared.protocol.request import LOG_LEVELS, Request
from shared.protocol.request_state import RequestStateCodec


class Server(Protocol):
    """What the methods read from the engine that dispatches to them (``shared.protocol.engine.McpEngine``)."""

    tools: ToolRegistry
    resources: ResourceRegistry
    prompts: PromptRegistry
    completions: CompletionRegistry
    request_state: RequestStateCodec
    page_size: int
    server_info: dict[str, str]
    instructions: str | None


Handler = Callable[[Server, Request], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    """One MCP method: its implementation and when the dispatcher may route to it."""

    handler: Handler
    # The eras (shared.features.versions) in which the method exists.
    modern: bool = True
    legacy: bool = True
    # Complete 2026-07-28 results get ttlMs/cacheScope.
    cacheable: bool = False
    # A method whose capability this server does not offer is answered as unknown.
    capability: str | None = None


def capabilities(server: Server, *, legacy: bool = False) -> dict[str, Any]:
    """The server capabilities, derived from what is registered."""
    result: dict[str, Any] = {"tools": {"listChanged": False}}
    if len(server.resources):
        result["resources"] = {"subscribe": False, "listChanged": False}
    if len(server.prompts):
        result["prompts"] = {"listChanged": False}
    if len(server.prompts) or server.resources.template_definitions():
        result["completions"] = {}
    if legacy:
        # logging/setLevel is answered; no notifications/message is ever sent (JSON responses only).
        result["logging"] = {}
    return result


# -- lifecycle and utilities ---------------------------------------------------------


def _initialize(server: Server, request: Request) -> dict[str, Any]:
    requested = request.params.get("protocolVersion")
    version = requested if requested in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": capabilities(server, legacy=True),
        "serverInfo": server.server_info,
    }
    if server.instructions:
        result["instructions"] = server.instructions
    return result


def _discover(server: Server, request: Request) -> dict[str, Any]:
    result: dict[str, Any] = {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": capabilities(server),
    }
    if server.instructions:
        result["instructions"] = server.instructions
    return result


def _ping(server: Server, request: Request) -> dict[str, Any]:
    return {}


def _set_level(server: Server, request: Request) -> dict[str, Any]:
    # Accepted and validated; there is no session to remember it in, and no notification
    # stream to filter: this server never sends notifications/message.
    if request.params.get("level") not in LOG_LEVELS:
        raise RpcError(INVALID_PARAMS, "Invalid params: level must be one of " + ", ".join(LOG_LEVELS))
    return {}


# -- tools ---------------------------------------------------------------------------


def _tools_list(server: Server, request: Request) -> dict[str, Any]:
    return _page(server, request, "tools", server.tools.definitions())


def _tools_call(server: Server, request: Request) -> dict[str, Any]:
    # The transport has already checked any Mcp-Param-* headers against these arguments.
    name = request.params.get("name")
    if not isinstance(name, str):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'name' must be a string")
    arguments = request.params.get("arguments")
    if server.tools.get(name) is None:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:128]}")
    return run_with_input(server.request_state, request, f"tools/call:{name}",
                          lambda ctx: server.tools.call(name, arguments, ctx), arguments)


# -- resources -----------------------------------------------------------------------


def _resources_list(server: Server, request: Request) -> dict[str, Any]:
    return _page(server, request, "resources", server.resources.definitions())


def _templates_list(server: Server, request: Request) -> dict[str, Any]:
    return _page(server, request, "resourceTemplates", server.resources.template_definitions())


def _resources_read(server: Server, request: Request) -> dict[str, Any]:
    uri = request.params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RpcError(INVALID_PARAMS, "Invalid params: 'uri' must be a string")
    try:
        server.resources.resolve(uri)
    except ResourceNotFound:
        code = INVALID_PARAMS if request.modern else LEGACY_RESOURCE_NOT_FOUND
        raise RpcError(code, "Resource not found", data={"uri": uri}) from None
    # A read has no arguments: the URI (its template variables included) is the binding itself.
    return run_with_input(server.request_state, request, f"resources/read:{uri}",
                          lambda ctx: server.resources.read(uri, ctx))


# -- prompts and completion ----------------------------------------------------------


def _prompts_list(server: Server, request: Request) -> dict[str, Any]:
    return _page(server, request, "prompts", server.prompts.definitions())


def _prompts_get(server: Server, request: Request) -> dict[str, Any]:
    name = request.params.get("name")
    if not isinstance(name, str):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'name' must be a string")
    if server.prompts.get(name) is None:
        raise RpcError(INVALID_PARAMS, f"Unknown prompt: {name[:128]}")
    arguments = request.params.get("arguments")

    def run(ctx: ToolContext) -> dict[str, Any]:
        try:
            return server.prompts.render(name, arguments, ctx)
        except PromptArgumentError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None

    return run_with_input(server.request_state, request, f"prompts/get:{name}", run, arguments)


def _complete(server: Server, request: Request) -> dict[str, Any]:
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
        if not isinstance(target, str) or server.prompts.get(target) is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown prompt")
    elif kind == "ref/resource":
        target = ref.get("uri")
        if not isinstance(target, str) or (
            server.resources.get_template(target) is None
            and not any(d["uri"] == target for d in server.resources.definitions())
        ):
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown resource or template")
    else:
        raise RpcError(INVALID_PARAMS, "Invalid params: ref.type must be ref/prompt or ref/resource")
    return {"completion": server.completions.complete(kind, target, arg_name, value, given)}


def _page(server: Server, request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return page(items, key, request.params.get("cursor"), server.page_size)


METHODS: Mapping[str, Method] = {
    "initialize": Method(_initialize, modern=False),
    "ping": Method(_ping, modern=False),
    "logging/setLevel": Method(_set_level, modern=False),
    "server/discover": Method(_discover, legacy=False, cacheable=True),
    "tools/list": Method(_tools_list, cacheable=True),
    "tools/call": Method(_tools_call),
    "resources/list": Method(_resources_list, cacheable=True, capability="resources"),
    "resources/templates/list": Method(_templates_list, cacheable=True, capability="resources"),
    "resources/read": Method(_resources_read, cacheable=True, capability="resources"),
    "prompts/list": Method(_prompts_list, cacheable=True, capability="prompts"),
    "prompts/get": Method(_prompts_get, capability="prompts"),
    "completion/complete": Method(_complete, capability="completions"),
}
