"""The tool registry: turns plain, type-hinted Python functions into MCP tools.

A forker writes::

    tools = ToolRegistry()

    @tools.tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two numbers.\"\"\"
        return a + b

and the registry derives the MCP tool definition (name, description, JSON Schema of the parameters and,
for TypedDict/dataclass results, of the output) once, at import time, so that mistakes surface when the app
starts rather than when a model first calls the tool. ``call`` authorises, validates, converts, invokes and
shapes the result as an MCP ``CallToolResult``.

This module knows nothing about HTTP, Entra or JSON-RPC framing: the caller arrives as anything shaped like
``Caller`` and downstream tokens come from anything shaped like ``DownstreamAuth``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import logging
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from shared.features.callables import NAME_PATTERN, NAME_RULE, parse_docstring, run_awaitable
from shared.features.context import Caller, DownstreamAuth, RequestInfo, ToolContext
from shared.features.errors import (
    AuthorizationChallenge,
    ClaimsChallengeError,
    InsufficientScopeError,
    ToolError,
    UrlElicitationRequired,
)
from shared.features.mrtr import InputRequired, elicit_url
from shared.features.schema import HEADER_KEY, Converter, Param, add_default, converter_for, schema_for, validate

# Caller, DownstreamAuth, RequestInfo and ToolContext live in shared.features.context, the errors in
# shared.features.errors and Param in shared.features.schema; they are re-exported here (and from shared.tools)
# so a tools file needs only this one import.
__all__ = [
    "AuthorizationChallenge",
    "Caller",
    "ClaimsChallengeError",
    "DownstreamAuth",
    "InsufficientScopeError",
    "Param",
    "RequestInfo",
    "Tool",
    "ToolAnnotations",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "UnknownToolError",
    "UrlElicitationRequired",
]

F = TypeVar("F", bound=Callable[..., Any])

# RFC 6749 scope-token characters: these end up inside a WWW-Authenticate header, so no spaces or quotes.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9110 field-name token (1*tchar): x-mcp-header becomes part of an HTTP header name.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Schema keywords whose values are subschemas but leave the chain of plain `properties` keys.
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not", "if", "then", "else", "contains",
                        "propertyNames", "unevaluatedItems", "unevaluatedProperties"})
_SUBSCHEMAS = frozenset({"anyOf", "allOf", "oneOf", "prefixItems"})


# --------------------------------------------------------------------------------------------------
# What a tool returns (what it sees is in shared.features.context, what it raises in shared.features.errors)


@dataclass(frozen=True)
class ToolAnnotations:
    """MCP behaviour hints for clients. They are hints, not guarantees, and never enforced here."""

    title: str | None = None
    read_only_hint: bool | None = None
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    open_world_hint: bool | None = None

    def to_json(self) -> dict[str, Any]:
        names = {
            "title": self.title,
            "readOnlyHint": self.read_only_hint,
            "destructiveHint": self.destructive_hint,
            "idempotentHint": self.idempotent_hint,
            "openWorldHint": self.open_world_hint,
        }
        return {key: value for key, value in names.items() if value is not None}


@dataclass(frozen=True)
class ToolResult:
    """Escape hatch: return this to control the MCP content blocks exactly (images, resources, ...)."""

    content: list[dict[str, Any]]
    structured_content: dict[str, Any] | None = None
    is_error: bool = False


class UnknownToolError(LookupError):
    """No tool has this name (the protocol engine answers JSON-RPC -32602)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool: {name[:128]}")
        self.name = name


# --------------------------------------------------------------------------------------------------
# Registration


@dataclass(frozen=True)
class Tool:
    """One registered tool. Everything here is computed once, at registration; treat it as read-only."""

    name: str
    description: str
    func: Callable[..., Any]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    title: str | None = None
    annotations: ToolAnnotations | None = None
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    structured_output: bool = True
    definition: dict[str, Any] = field(default_factory=dict, repr=False)
    # Parameter name -> converter (None when the JSON value passes through unchanged).
    converters: Mapping[str, Converter | None] = field(default_factory=dict, repr=False)
    context_params: tuple[str, ...] = field(default=(), repr=False)


class ToolRegistry:
    """An ordered collection of tools, filled with the ``@registry.tool`` decorator."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._definitions: list[dict[str, Any]] | None = None

    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        structured_output: bool | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        structured_output: bool | None = None,
    ) -> F | Callable[[F], F]:
        """Register a function as a tool; use as ``@tools.tool`` or ``@tools.tool(...)``.

        Args:
            name: Tool name shown to the model; defaults to the function name.
            title: Human-friendly display name.
            description: Defaults to the docstring (up to its "Args:" section). Required one way or the other.
            annotations: Behaviour hints (read-only, destructive, ...) for clients.
            scopes: Delegated scopes (short names) the caller must all hold, on top of the server-wide ones.
            roles: App roles the caller must all hold.
            structured_output: None derives it from the return annotation (TypedDict/dataclass -> yes); True
                forces an outputSchema for a dict-like annotation; False never emits structured content.

        The function is returned unchanged, so it stays a plain, unit-testable function.
        """

        def register(f: F) -> F:
            tool = _build_tool(
                f,
                name=name,
                title=title,
                description=description,
                annotations=annotations,
                scopes=scopes,
                roles=roles,
                structured_output=structured_output,
            )
            if tool.name in self._tools:
                raise ValueError(f"A tool named {tool.name!r} is already registered")
            self._tools[tool.name] = tool
            self._definitions = None
            return f

        return register if func is None else register(func)

    def definitions(self) -> list[dict[str, Any]]:
        """MCP Tool objects in registration order. Cached: callers must not mutate the result."""
        if self._definitions is None:
            self._definitions = [tool.definition for tool in self._tools.values()]
        return self._definitions

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def call(self, name: str, arguments: Mapping[str, Any] | None, ctx: ToolContext) -> dict[str, Any]:
        """Run a tool and return an MCP CallToolResult dict.

        Raises UnknownToolError for an unknown name and InsufficientScopeError when the caller lacks the
        tool's scopes/roles (checked before the arguments) or the tool raises it itself. Every other failure
        (bad arguments, ToolError, unexpected exceptions, results not matching the output schema) becomes a
        result with ``isError: true``; unexpected exceptions are logged and never described to the caller.
        """
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownToolError(name)
        _authorize(tool, ctx.caller)

        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            return _error(f"Invalid arguments for tool '{name}': arguments must be an object")
        problems = validate(arguments, tool.input_schema, root="arguments")
        if problems:
            return _error(f"Invalid arguments for tool '{name}': {'; '.join(problems)}")

        try:
            converters = tool.converters
            kwargs = {key: (conv(value) if (conv := converters[key]) else value) for key, value in arguments.items()}
            kwargs.update((param, ctx) for param in tool.context_params)
            value = tool.func(**kwargs)
            if inspect.isawaitable(value):
                value = run_awaitable(value)
            return _to_result(tool, value, ctx.log)
        except UrlElicitationRequired as exc:
            if ctx.can_ask(request := elicit_url(exc.message, exc.url)):
                raise InputRequired({"url_elicitation": request}) from None
            return _error(str(exc))
        except ToolError as exc:
            return _error(str(exc) or f"Tool '{name}' failed.")
        except (AuthorizationChallenge, InputRequired):
            raise  # Run-time step-up (403 challenge) or a request for client input (InputRequiredResult).
        except _OutputMismatch:
            return _error(f"Tool '{name}' failed with an internal error.")  # already logged, without a traceback
        except Exception:
            ctx.log.exception("Tool %r raised an unexpected exception", name)
            return _error(f"Tool '{name}' failed with an internal error.")


def _authorize(tool: Tool, caller: Caller) -> None:
    missing_scopes = [s for s in tool.scopes if s not in caller.scopes] if tool.scopes else []
    missing_roles = [r for r in tool.roles if r not in caller.roles] if tool.roles else []
    if missing_scopes or missing_roles:
        raise InsufficientScopeError(missing_scopes, missing_roles)


def _error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _to_result(tool: Tool, value: Any, log: logging.Logger) -> dict[str, Any]:
    if isinstance(value, ToolResult):
        result: dict[str, Any] = {"content": list(value.content)}
        if value.structured_content is not None:
            result["structuredContent"] = value.structured_content
        if value.is_error:
            result["isError"] = True
            return result
        if tool.output_schema is not None:
            _check_output(tool, value.structured_content, log)
        return result

    if isinstance(value, str) and tool.output_schema is None:
        return {"content": [{"type": "text", "text": value}]}
    if value is None and tool.output_schema is None:
        return {"content": []}

    # The C encoder walks plain values itself and asks _json_default only about the rest;
    # parsing its output back gives structuredContent as fresh, plain JSON values.
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
    structured = json.loads(text) if tool.structured_output and _is_record(value) else None
    if tool.output_schema is not None:
        _check_output(tool, structured, log)
    result = {"content": [{"type": "text", "text": text}]}
    if structured is not None:
        result["structuredContent"] = structured
    return result


class _OutputMismatch(Exception):
    """A result that breaks the tool's own output schema: a bug in the tool, reported as an internal error."""


def _check_output(tool: Tool, structured: Any, log: logging.Logger) -> None:
    assert tool.output_schema is not None
    if structured is None:
        problems = ["result: expected an object (the tool declares an output schema)"]
    else:
        problems = validate(structured, tool.output_schema, root="result")
    if problems:
        log.error("Tool %r returned a result that does not match its output schema: %s", tool.name, "; ".join(problems))
        raise _OutputMismatch(tool.name)


def _is_record(value: Any) -> bool:
    return isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def _json_default(value: Any) -> Any:
    """What json.dumps cannot encode by itself: dataclasses, mappings, sets and enums; anything else is an error."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _build_tool(
    func: Callable[..., Any],
    *,
    name: str | None,
    title: str | None,
    description: str | None,
    annotations: ToolAnnotations | None,
    scopes: Iterable[str],
    roles: Iterable[str],
    structured_output: bool | None,
) -> Tool:
    if not callable(func):
        raise TypeError(f"@tool needs a function, got {type(func).__name__}")
    name = name if name is not None else getattr(func, "__name__", "")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"Invalid tool name {name!r}: {NAME_RULE}")
    where = f"Tool {name!r}"
    summary, arg_docs = parse_docstring(func.__doc__)
    description = inspect.cleandoc(description) if description else summary
    if not description:
        raise ValueError(f"{where} has no description: write a docstring (the model reads it to choose tools)")
    if annotations is not None and not isinstance(annotations, ToolAnnotations):
        raise TypeError(f"{where}: annotations must be a ToolAnnotations")

    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolved forward references and the like
        raise TypeError(f"{where}: cannot resolve its type annotations: {exc}") from None

    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, Converter | None] = {}
    context_params: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs are not supported; declare each parameter")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{where}: positional-only parameter {param.name!r} is not supported")
        if param.name not in hints:
            raise TypeError(f"{where}: parameter {param.name!r} needs a type annotation")
        hint = hints[param.name]
        if hint is ToolContext:
            context_params.append(param.name)
            continue
        try:
            prop = schema_for(hint)
            converters[param.name] = converter_for(hint)
        except TypeError as exc:
            raise TypeError(f"{where}: parameter {param.name!r} has an unsupported type {hint!r}: {exc}") from None
        if "description" not in prop and param.name in arg_docs:
            prop["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif param.default is not None or not validate(None, prop, max_errors=1):
            # A None default of a header parameter (advertised without null) goes undocumented.
            add_default(prop, param.default)
        properties[param.name] = prop

    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    input_schema["additionalProperties"] = False
    _check_headers(where, input_schema)

    output_schema = _output_schema(where, hints.get("return", inspect.Signature.empty), structured_output)
    tool_scopes = _tokens(where, "scopes", scopes)
    tool_roles = _tokens(where, "roles", roles)

    definition: dict[str, Any] = {"name": name}
    if title:
        definition["title"] = title
    definition["description"] = description
    definition["inputSchema"] = input_schema
    if output_schema is not None:
        definition["outputSchema"] = output_schema
    if annotations is not None and annotations.to_json():
        definition["annotations"] = annotations.to_json()

    return Tool(
        name=name,
        description=description,
        func=func,
        input_schema=input_schema,
        output_schema=output_schema,
        title=title,
        annotations=annotations,
        scopes=tool_scopes,
        roles=tool_roles,
        structured_output=structured_output is not False,
        definition=definition,
        converters=converters,
        context_params=tuple(context_params),
    )


def _check_headers(where: str, input_schema: dict[str, Any]) -> None:
    """Enforce the 2026-07-28 rules for Param(header=...) now: clients drop a tool that breaks them."""
    seen: dict[str, str] = {}
    for path, reachable, schema in _schema_positions(input_schema, (), True):
        if HEADER_KEY not in schema:
            continue
        header = schema[HEADER_KEY]
        name = ".".join(path)
        what = f"{where}: parameter {name!r} has Param(header={header!r})"
        if not reachable or not path:
            raise TypeError(f"{what} inside a list, dict or union member; only a parameter itself or a "
                            "TypedDict/dataclass field reached through plain fields can be mirrored into a header")
        if not isinstance(header, str) or not header:
            raise ValueError(f"{what}: the header name must not be empty")
        if not _HEADER_TOKEN.fullmatch(header):
            raise ValueError(f"{what}: the header name must be an HTTP token "
                             "(letters, digits and !#$%&'*+-.^_`|~; no spaces or control characters)")
        if schema.get("type") not in ("string", "integer", "boolean"):
            raise TypeError(f"{what}: only str, int and bool values (or Literals/Enums of one of them) can be "
                            "mirrored into a header, not floats, lists, objects or unions")
        if (other := seen.setdefault(header.lower(), name)) != name:
            raise ValueError(f"{what}: parameter {other!r} already uses that header name (case-insensitively)")


def _schema_positions(
    schema: Any, path: tuple[str, ...], reachable: bool
) -> Iterator[tuple[tuple[str, ...], bool, dict[str, Any]]]:
    """(property names on the way, whether only `properties` keys led here, subschema) for every subschema."""
    if not isinstance(schema, dict):
        return
    yield path, reachable, schema
    for keyword, value in schema.items():
        if keyword == "properties" and isinstance(value, dict):
            for key, sub in value.items():
                yield from _schema_positions(sub, (*path, key), reachable)
        elif keyword in _SUBSCHEMA:
            yield from _schema_positions(value, path, False)
        elif keyword in _SUBSCHEMAS and isinstance(value, list):
            for sub in value:
                yield from _schema_positions(sub, path, False)


def _output_schema(where: str, hint: Any, structured_output: bool | None) -> dict[str, Any] | None:
    if structured_output is False or hint is inspect.Signature.empty:
        if structured_output:
            raise TypeError(f"{where}: structured_output=True needs a return annotation")
        return None
    bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if bare is ToolResult:
        if structured_output:
            raise TypeError(f"{where}: a ToolResult carries its own structured_content; drop structured_output=True")
        return None  # The escape hatch describes itself; it is not the shape of the output.
    is_record = isinstance(bare, type) and (dataclasses.is_dataclass(bare) or hasattr(bare, "__required_keys__"))
    if not is_record and not structured_output:
        return None
    try:
        schema = schema_for(hint)
    except TypeError as exc:
        raise TypeError(f"{where}: unsupported return type {hint!r}: {exc}") from None
    if schema.get("type") != "object":
        raise TypeError(
            f"{where}: structured_output=True needs a TypedDict, dataclass or dict[str, ...] return type, not {hint!r}"
        )
    return schema


def _tokens(where: str, kind: str, values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):  # scopes="Mail.Read" means one scope, not eight characters
        values = [values]
    result: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _SCOPE_TOKEN.fullmatch(value):
            raise ValueError(f"{where}: invalid entry {value!r} in {kind} (no spaces or quotes)")
        if value not in result:
            result.append(value)
    return tuple(result)
