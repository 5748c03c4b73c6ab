"""The tool registry: registration rules, definitions, authorisation, validation, invocation, results."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypedDict

import pytest

from callers import FakeCaller
from shared.features.context import NO_DOWNSTREAM_MESSAGE
from shared.features.schema import Param
from shared.features.tools import (
    Caller,
    InsufficientScopeError,
    RequestInfo,
    Tool,
    ToolAnnotations,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    UnknownToolError,
)


@dataclass
class FakeDownstream:
    requested: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str) -> str:
        self.requested.append(scopes)
        return "downstream-token"


def make_ctx(caller: Caller | None = None, **kwargs: Any) -> ToolContext:
    return ToolContext(caller=caller or FakeCaller(), request=RequestInfo("2025-06-18", {}, {}), **kwargs)


def text_of(result: dict[str, Any]) -> str:
    assert len(result["content"]) == 1
    return result["content"][0]["text"]


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Forecast(TypedDict):
    city: str
    degrees: float
    unit: str


@dataclass
class Summary:
    count: int
    names: list[str]


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry()


# --------------------------------------------------------------------------------------------------
# Registration and definitions


def test_decorator_forms_return_the_function_unchanged(registry: ToolRegistry) -> None:
    def plain(x: int) -> int:
        """Plain."""
        return x

    assert registry.tool(plain) is plain
    assert registry.tool(name="other")(plain) is plain

    @registry.tool
    def bare() -> str:
        """Bare."""
        return "ok"

    @registry.tool()
    def called() -> str:
        """Called."""
        return "ok"

    assert bare() == "ok"
    assert [t.name for t in registry] == ["plain", "other", "bare", "called"]
    assert len(registry) == 4
    assert "bare" in registry and "nope" not in registry
    assert isinstance(registry.get("bare"), Tool)
    assert registry.get("nope") is None


def test_definition_shape(registry: ToolRegistry) -> None:
    @registry.tool(title="Weather", annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False))
    def forecast(
        ctx: ToolContext,
        city: Annotated[str, Param(description="City name", min_length=1)],
        days: Annotated[int, "Number of days"] = 1,
        unit: Unit = Unit.CELSIUS,
        note: str | None = None,
    ) -> Forecast:
        """Get the weather forecast.

        Works for any city on Earth.

        Args:
            city: Ignored, because Annotated wins.
            unit: Temperature unit
                for the answer.
            note (str): Free text.

        Returns:
            The forecast.
        """
        raise AssertionError

    assert registry.definitions() == [
        {
            "name": "forecast",
            "title": "Weather",
            "description": "Get the weather forecast.\n\nWorks for any city on Earth.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 1, "description": "City name"},
                    "days": {"type": "integer", "description": "Number of days", "default": 1},
                    "unit": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "description": "Temperature unit for the answer.",
                        "default": "celsius",
                    },
                    "note": {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "description": "Free text.",
                        "default": None,
                    },
                },
                "required": ["city"],
                "additionalProperties": False,
            },
            "outputSchema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "degrees": {"type": "number"}, "unit": {"type": "string"}},
                "required": ["city", "degrees", "unit"],
                "additionalProperties": False,
            },
            "annotations": {"readOnlyHint": True, "destructiveHint": False},
        }
    ]
    tool = registry.get("forecast")
    assert tool is not None and tool.context_params == ("ctx",)


def test_definitions_validate_against_the_mcp_sdk(registry: ToolRegistry) -> None:
    mcp_types = pytest.importorskip("mcp.types")
    import tools as forker_tools

    @registry.tool
    def summary(items: list[str]) -> Summary:
        """Summarise."""
        return Summary(len(items), items)

    for definition in [*registry.definitions(), *forker_tools.tools.definitions()]:
        mcp_types.Tool.model_validate(definition)
    mcp_types.CallToolResult.model_validate(registry.call("summary", {"items": ["a"]}, make_ctx()))


def test_explicit_description_and_no_params(registry: ToolRegistry) -> None:
    @registry.tool(name="ping.v2", description="\n    Check liveness.\n      Indented.\n")
    def ping() -> str:
        return "pong"

    assert registry.definitions() == [
        {
            "name": "ping.v2",
            "description": "Check liveness.\n  Indented.",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
        }
    ]


def test_definitions_are_cached_and_invalidated(registry: ToolRegistry) -> None:
    @registry.tool
    def first() -> None:
        """First."""

    definitions = registry.definitions()
    assert registry.definitions() is definitions

    @registry.tool
    def second() -> None:
        """Second."""

    assert [d["name"] for d in registry.definitions()] == ["first", "second"]
    assert registry.definitions() is registry.definitions()


def test_non_json_default_is_optional_without_default(registry: ToolRegistry) -> None:
    sentinel = object()

    @registry.tool
    def opt(x: Any = sentinel) -> str:
        """Opt."""
        return "default" if x is sentinel else "given"

    schema = registry.definitions()[0]["inputSchema"]
    assert schema["properties"] == {"x": {}}
    assert "required" not in schema
    assert registry.call("opt", {}, make_ctx())["content"][0]["text"] == "default"


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 129, "émoji", "trailing\n"])
def test_invalid_names(registry: ToolRegistry, name: str) -> None:
    def f() -> None:
        """Doc."""

    with pytest.raises(ValueError, match="Invalid tool name"):
        registry.tool(name=name)(f)


def test_lambda_needs_a_name(registry: ToolRegistry) -> None:
    with pytest.raises(ValueError, match="Invalid tool name"):
        registry.tool(lambda: None)


def test_long_valid_name(registry: ToolRegistry) -> None:
    def f() -> None:
        """Doc."""

    registry.tool(name="a-Z_0." + "x" * 122)(f)
    assert len(registry) == 1


def test_duplicate_names(registry: ToolRegistry) -> None:
    def f() -> None:
        """Doc."""

    registry.tool(f)
    with pytest.raises(ValueError, match="already registered"):
        registry.tool(f)


def test_missing_description(registry: ToolRegistry) -> None:
    def undocumented(x: int) -> int:
        return x

    def only_args(x: int) -> int:
        """
        Args:
            x: A number.
        """
        return x

    with pytest.raises(ValueError, match="no description"):
        registry.tool(undocumented)
    with pytest.raises(ValueError, match="no description"):
        registry.tool(only_args)


def test_unannotated_parameter(registry: ToolRegistry) -> None:
    def f(x) -> None:  # type: ignore[no-untyped-def]
        """Doc."""

    with pytest.raises(TypeError, match="parameter 'x' needs a type annotation"):
        registry.tool(f)


def test_varargs_and_positional_only_are_rejected(registry: ToolRegistry) -> None:
    def args(*xs: int) -> None:
        """Doc."""

    def kwargs(**xs: int) -> None:
        """Doc."""

    def positional(x: int, /) -> None:
        """Doc."""

    for func in (args, kwargs):
        with pytest.raises(TypeError, match=r"\*args and \*\*kwargs"):
            registry.tool(func)
    with pytest.raises(TypeError, match="positional-only"):
        registry.tool(positional)


def test_unsupported_parameter_type_names_parameter_and_type(registry: ToolRegistry) -> None:
    def f(blob: bytes) -> None:
        """Doc."""

    with pytest.raises(TypeError, match=r"Tool 'f': parameter 'blob' has an unsupported type <class 'bytes'>"):
        registry.tool(f)


def test_optional_tool_context_is_not_injected(registry: ToolRegistry) -> None:
    def f(ctx: ToolContext | None = None) -> None:
        """Doc."""

    with pytest.raises(TypeError, match="parameter 'ctx'"):
        registry.tool(f)


def test_unresolvable_annotation(registry: ToolRegistry) -> None:
    def f(x: DoesNotExist) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Doc."""

    with pytest.raises(TypeError, match="cannot resolve"):
        registry.tool(f)


def test_scope_and_role_declarations(registry: ToolRegistry) -> None:
    def f() -> None:
        """Doc."""

    registry.tool(name="a", scopes="Mail.Read", roles=["Admin", "Admin"])(f)
    tool = registry.get("a")
    assert tool is not None and tool.scopes == ("Mail.Read",) and tool.roles == ("Admin",)
    for bad in (["two words"], ['quo"te'], [""], [1]):
        with pytest.raises(ValueError, match="invalid entry"):
            registry.tool(name="b", scopes=bad)(f)  # type: ignore[arg-type]


def test_structured_output_rules(registry: ToolRegistry) -> None:
    @registry.tool(structured_output=True)
    def as_dict() -> dict[str, int]:
        """Dict."""
        return {"a": 1}

    @registry.tool(structured_output=False)
    def as_text() -> Forecast:
        """Text only."""
        return Forecast(city="c", degrees=1.5, unit="u")

    @registry.tool
    def untyped_dict() -> dict[str, Any]:
        """No schema, but still structured."""
        return {"a": [1, 2]}

    definitions = {d["name"]: d for d in registry.definitions()}
    assert definitions["as_dict"]["outputSchema"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert "outputSchema" not in definitions["as_text"]
    assert "outputSchema" not in definitions["untyped_dict"]

    assert registry.call("as_dict", {}, make_ctx())["structuredContent"] == {"a": 1}
    text_only = registry.call("as_text", {}, make_ctx())
    assert "structuredContent" not in text_only
    assert json.loads(text_of(text_only)) == {"city": "c", "degrees": 1.5, "unit": "u"}
    assert registry.call("untyped_dict", {}, make_ctx())["structuredContent"] == {"a": [1, 2]}

    def scalar() -> int:
        """Scalar."""
        return 1

    def unannotated():  # type: ignore[no-untyped-def]
        """Unannotated."""

    with pytest.raises(TypeError, match="structured_output=True needs"):
        registry.tool(structured_output=True)(scalar)
    with pytest.raises(TypeError, match="structured_output=True needs a return annotation"):
        registry.tool(structured_output=True)(unannotated)


# x-mcp-header (Param(header=...)): mistakes surface at registration, naming the tool and the parameter.


class Placement(TypedDict):
    zone: Annotated[str, Param(header="Zone")]
    rack: int


class Tagged(TypedDict):
    tag: Annotated[str, Param(header="Tag")]


def _with_hints(**hints: Any) -> Any:
    """A documented tool function whose annotations are ``hints`` (objects, not strings)."""

    def f(**kwargs: Any) -> str:
        """Doc."""
        return "ok"

    f.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in hints]
    )
    f.__annotations__ = {**hints, "return": str}
    return f


def test_param_header_goes_into_the_definition(registry: ToolRegistry) -> None:
    @registry.tool
    def query(
        region: Annotated[str, Param(description="Region", header="Region")],
        sql: str,
        where: Placement,
        dry_run: Annotated[bool | None, Param(header="Dry-Run")] = None,
    ) -> str:
        """Run a query."""
        return f"{region} {dry_run}"

    properties = registry.definitions()[0]["inputSchema"]["properties"]
    assert properties["region"] == {"type": "string", "description": "Region", "x-mcp-header": "Region"}
    assert "x-mcp-header" not in properties["sql"]
    assert properties["where"]["properties"]["zone"]["x-mcp-header"] == "Zone"
    # Optional: advertised as the plain type, and its None default is not documented as a JSON null.
    assert properties["dry_run"] == {"type": "boolean", "x-mcp-header": "Dry-Run"}
    where = {"zone": "z1", "rack": 1}
    assert text_of(registry.call("query", {"region": "eu", "sql": "s", "where": where}, make_ctx())) == "eu None"
    result = registry.call("query", {"region": "eu", "sql": "s", "where": where, "dry_run": None}, make_ctx())
    assert result["isError"] is True and "arguments.dry_run: expected boolean, got null" in text_of(result)


def test_param_header_definitions_pass_the_mcp_sdk_check(registry: ToolRegistry) -> None:
    # The reference SDK client drops a tool whose x-mcp-header annotations it finds invalid.
    inbound = pytest.importorskip("mcp.shared.inbound")

    @registry.tool
    def query(
        where: Placement,
        region: Annotated[str | None, Param(header="Region")] = None,
        limit: Annotated[int, Param(header="Limit", maximum=100)] = 10,
    ) -> str:
        """Run a query."""
        return "ok"

    schema = registry.definitions()[0]["inputSchema"]
    assert inbound.find_invalid_x_mcp_header(schema) is None
    assert inbound.x_mcp_header_map(schema) == {("where", "zone"): "Zone", ("region",): "Region", ("limit",): "Limit"}


@pytest.mark.parametrize(
    ("hints", "error", "message"),
    [
        ({"a": Annotated[str, Param(header="")]}, ValueError, "'a' .*must not be empty"),
        ({"a": Annotated[str, Param(header="Two Words")]}, ValueError, "'a' .*HTTP token"),
        ({"a": Annotated[str, Param(header="Région")]}, ValueError, "'a' .*HTTP token"),
        ({"a": Annotated[str, Param(header="X\r\nSet-Cookie")]}, ValueError, "'a' .*HTTP token"),
        ({"a": Annotated[str, Param(header="a:b")]}, ValueError, "'a' .*HTTP token"),
        ({"a": Annotated[float, Param(header="X")]}, TypeError, "'a' .*only str, int and bool"),
        ({"a": Annotated[int | str, Param(header="X")]}, TypeError, "'a' .*only str, int and bool"),
        ({"a": Annotated[list[str], Param(header="X")]}, TypeError, "'a' .*only str, int and bool"),
        ({"a": Annotated[Placement, Param(header="X")]}, TypeError, "'a' .*only str, int and bool"),
        ({"a": Annotated[Literal[1, "x"], Param(header="X")]}, TypeError, "'a' .*only str, int and bool"),
        ({"a": list[Annotated[str, Param(header="X")]]}, TypeError, "'a' .*inside a list, dict or union"),
        ({"a": dict[str, Annotated[str, Param(header="X")]]}, TypeError, "'a' .*inside a list, dict or union"),
        ({"a": tuple[Annotated[str, Param(header="X")], int]}, TypeError, "'a' .*inside a list, dict or union"),
        ({"a": int | Annotated[str, Param(header="X")]}, TypeError, "'a' .*inside a list, dict or union"),
        ({"a": list[Tagged]}, TypeError, "'a.tag' .*inside a list, dict or union"),
        ({"a": Tagged | None}, TypeError, "'a.tag' .*inside a list, dict or union"),
        (
            {"a": Annotated[str, Param(header="Region")], "b": Annotated[int, Param(header="region")]},
            ValueError, "'b' .*'a' already uses that header name",
        ),
        (
            {"a": Annotated[str, Param(header="Zone")], "b": Placement},
            ValueError, "'b.zone' .*'a' already uses that header name",
        ),
    ],
)
def test_param_header_mistakes_fail_at_registration(
    registry: ToolRegistry, hints: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^Tool 'f': parameter " + message):
        registry.tool(_with_hints(**hints))
    assert "f" not in registry


# --------------------------------------------------------------------------------------------------
# Calling


def test_unknown_tool(registry: ToolRegistry) -> None:
    with pytest.raises(UnknownToolError) as info:
        registry.call("nope", {}, make_ctx())
    assert info.value.name == "nope"
    assert isinstance(info.value, LookupError)


def test_sync_call_with_coercion(registry: ToolRegistry) -> None:
    seen: dict[str, Any] = {}

    @registry.tool
    def convert(count: int, unit: Unit, pair: tuple[int, int], tags: set[str], maybe: Unit | None = None) -> str:
        """Convert."""
        seen.update(count=count, unit=unit, pair=pair, tags=tags, maybe=maybe)
        return "done"

    result = registry.call(
        "convert", {"count": 3.0, "unit": "fahrenheit", "pair": [1.0, 2], "tags": ["a", "b"]}, make_ctx()
    )
    assert result == {"content": [{"type": "text", "text": "done"}]}
    assert seen == {"count": 3, "unit": Unit.FAHRENHEIT, "pair": (1, 2), "tags": {"a", "b"}, "maybe": None}
    assert type(seen["count"]) is int


def test_dataclass_parameter_is_constructed(registry: ToolRegistry) -> None:
    @registry.tool
    def count(summary: Summary) -> int:
        """Count."""
        assert isinstance(summary, Summary)
        return summary.count + len(summary.names)

    assert text_of(registry.call("count", {"summary": {"count": 2.0, "names": ["x"]}}, make_ctx())) == "3"


def test_context_injection(registry: ToolRegistry) -> None:
    @registry.tool
    def who(ctx: ToolContext, greeting: str = "hi") -> str:
        """Greet."""
        return f"{greeting} {ctx.caller.claims['name']} via {ctx.request.protocol_version}"

    result = registry.call("who", {}, make_ctx(FakeCaller(claims={"name": "Ada"})))
    assert text_of(result) == "hi Ada via 2025-06-18"


def test_context_cannot_be_passed_as_an_argument(registry: ToolRegistry) -> None:
    @registry.tool
    def who(ctx: ToolContext) -> str:
        """Greet."""
        return "x"

    result = registry.call("who", {"ctx": "forged"}, make_ctx())
    assert result["isError"] is True
    assert text_of(result) == "Invalid arguments for tool 'who': arguments.ctx: unknown property (allowed: none)"


def test_argument_validation_errors(registry: ToolRegistry) -> None:
    @registry.tool
    def add(a: int, b: int, mode: Literal["fast", "exact"] = "fast") -> int:
        """Add."""
        return a + b

    ctx = make_ctx()
    assert text_of(registry.call("add", {"a": 1, "b": 2}, ctx)) == "3"
    assert text_of(registry.call("add", {"a": 1.0, "b": 2}, ctx)) == "3"
    cases = {
        "bad type": ({"a": "1", "b": 2}, "arguments.a: expected integer, got string"),
        "bool": ({"a": True, "b": 2}, "arguments.a: expected integer, got boolean"),
        "missing": ({"a": 1}, "arguments.b: missing required property"),
        "unknown": ({"a": 1, "b": 2, "c": 3}, "arguments.c: unknown property (allowed: a, b, mode)"),
        "enum": ({"a": 1, "b": 2, "mode": "slow"}, 'arguments.mode: expected one of "fast", "exact"'),
    }
    for label, (arguments, error) in cases.items():
        result = registry.call("add", arguments, ctx)
        assert result["isError"] is True, label
        assert text_of(result) == f"Invalid arguments for tool 'add': {error}", label

    several = registry.call("add", {"a": "x", "b": "y"}, ctx)
    assert text_of(several) == (
        "Invalid arguments for tool 'add': arguments.a: expected integer, got string; "
        "arguments.b: expected integer, got string"
    )


def test_read_only_mapping_arguments(registry: ToolRegistry) -> None:
    @registry.tool
    def echo(word: str) -> str:
        """Echo."""
        return word

    assert text_of(registry.call("echo", MappingProxyType({"word": "hi"}), make_ctx())) == "hi"


def test_none_and_non_mapping_arguments(registry: ToolRegistry) -> None:
    @registry.tool
    def noop() -> str:
        """Noop."""
        return "ok"

    assert text_of(registry.call("noop", None, make_ctx())) == "ok"
    for bad in ([1], "x", 3):
        result = registry.call("noop", bad, make_ctx())  # type: ignore[arg-type]
        assert result["isError"] is True
        assert text_of(result) == "Invalid arguments for tool 'noop': arguments must be an object"


def test_argument_error_cap(registry: ToolRegistry) -> None:
    @registry.tool
    def many(values: list[int]) -> None:
        """Many."""

    result = registry.call("many", {"values": ["x"] * 10_000}, make_ctx())
    assert text_of(result).count("expected integer") == 10
    assert text_of(result).endswith("arguments: more errors omitted")


# Authorisation


def test_scopes_and_roles_are_checked_before_arguments(registry: ToolRegistry) -> None:
    called = []

    @registry.tool(scopes=["Mail.Read", "Mail.Send"], roles=["Tools.Admin"])
    def send(to: str) -> str:
        """Send."""
        called.append(to)
        return "sent"

    weak = FakeCaller(scopes=frozenset({"user_impersonation", "Mail.Read"}))
    with pytest.raises(InsufficientScopeError) as info:
        registry.call("send", {"bogus": 1}, make_ctx(weak))
    assert info.value.scopes == ("Mail.Send",)
    assert info.value.roles == ("Tools.Admin",)
    assert "Mail.Send" in str(info.value) and "Tools.Admin" in str(info.value)

    no_role = FakeCaller(scopes=frozenset({"Mail.Read", "Mail.Send"}))
    with pytest.raises(InsufficientScopeError) as info:
        registry.call("send", {}, make_ctx(no_role))
    assert info.value.scopes == () and info.value.roles == ("Tools.Admin",)

    strong = FakeCaller(scopes=frozenset({"Mail.Read", "Mail.Send"}), roles=frozenset({"Tools.Admin", "Other"}))
    assert registry.call("send", {"to": "x"}, make_ctx(strong)) == {"content": [{"type": "text", "text": "sent"}]}
    assert called == ["x"]


def test_roles_only_tool_works_for_app_only_callers(registry: ToolRegistry) -> None:
    @registry.tool(roles=["Jobs.Run"])
    def run() -> str:
        """Run."""
        return "ran"

    app = FakeCaller(scopes=frozenset(), roles=frozenset({"Jobs.Run"}))
    assert text_of(registry.call("run", {}, make_ctx(app))) == "ran"
    with pytest.raises(InsufficientScopeError):
        registry.call("run", {}, make_ctx(FakeCaller()))


def test_insufficient_scope_raised_by_the_body_propagates(registry: ToolRegistry) -> None:
    @registry.tool
    def step_up() -> str:
        """Needs more at run time."""
        raise InsufficientScopeError(["Files.ReadWrite"])

    with pytest.raises(InsufficientScopeError) as info:
        registry.call("step_up", {}, make_ctx())
    assert info.value.scopes == ("Files.ReadWrite",)


# Errors


def test_tool_error_message_is_shown(registry: ToolRegistry) -> None:
    @registry.tool
    def fail(reason: str) -> str:
        """Fail."""
        raise ToolError(f"Cannot do that: {reason}")

    @registry.tool
    def fail_silently() -> str:
        """Fail without words."""
        raise ToolError

    assert registry.call("fail", {"reason": "closed"}, make_ctx()) == {
        "content": [{"type": "text", "text": "Cannot do that: closed"}],
        "isError": True,
    }
    assert text_of(registry.call("fail_silently", {}, make_ctx())) == "Tool 'fail_silently' failed."


def test_unexpected_exception_is_logged_not_leaked(registry: ToolRegistry, caplog: pytest.LogCaptureFixture) -> None:
    @registry.tool
    def explode() -> str:
        """Explode."""
        raise RuntimeError("database password is hunter2")

    with caplog.at_level(logging.ERROR, logger="mcp.tools"):
        result = registry.call("explode", {}, make_ctx())
    assert result == {
        "content": [{"type": "text", "text": "Tool 'explode' failed with an internal error."}],
        "isError": True,
    }
    assert "hunter2" not in json.dumps(result)
    assert "Traceback" not in json.dumps(result)
    [record] = [r for r in caplog.records if r.name == "mcp.tools"]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])
    assert "explode" in record.getMessage()


def test_custom_logger_is_used(registry: ToolRegistry, caplog: pytest.LogCaptureFixture) -> None:
    @registry.tool
    def explode() -> str:
        """Explode."""
        raise KeyError("k")

    with caplog.at_level(logging.ERROR, logger="custom"):
        registry.call("explode", {}, make_ctx(log=logging.getLogger("custom")))
    assert [r.name for r in caplog.records] == ["custom"]


def test_unknown_tool_error_from_the_body_is_an_internal_error(registry: ToolRegistry) -> None:
    @registry.tool
    def nested() -> str:
        """Calls a tool that does not exist."""
        raise UnknownToolError("other")

    assert text_of(registry.call("nested", {}, make_ctx())) == "Tool 'nested' failed with an internal error."


# Results


def returning(value: Any) -> Any:
    def tool():  # type: ignore[no-untyped-def]  # no return annotation: the value decides the shape
        return value

    return tool


def test_result_conversions(registry: ToolRegistry) -> None:
    values: dict[str, Any] = {
        "text": "héllo",
        "none": None,
        "integer": 42,
        "number": 1.5,
        "boolean": True,
        "array": [1, "é", None],
        "tuple": (1, 2),
        "mapping": {"a": Unit.CELSIUS, "b": (1,)},
    }
    for name, value in values.items():
        registry.tool(name=name, description="Return a value.")(returning(value))

    ctx = make_ctx()
    assert registry.call("text", {}, ctx) == {"content": [{"type": "text", "text": "héllo"}]}
    assert registry.call("none", {}, ctx) == {"content": []}
    assert registry.call("integer", {}, ctx) == {"content": [{"type": "text", "text": "42"}]}
    assert registry.call("number", {}, ctx) == {"content": [{"type": "text", "text": "1.5"}]}
    assert registry.call("boolean", {}, ctx) == {"content": [{"type": "text", "text": "true"}]}
    assert registry.call("array", {}, ctx) == {"content": [{"type": "text", "text": '[1, "é", null]'}]}
    assert registry.call("tuple", {}, ctx) == {"content": [{"type": "text", "text": "[1, 2]"}]}
    assert registry.call("mapping", {}, ctx) == {
        "content": [{"type": "text", "text": '{"a": "celsius", "b": [1]}'}],
        "structuredContent": {"a": "celsius", "b": [1]},
    }


def test_typeddict_result(registry: ToolRegistry) -> None:
    @registry.tool
    def forecast(city: str) -> Forecast:
        """Forecast."""
        return Forecast(city=city, degrees=21.5, unit="celsius")

    result = registry.call("forecast", {"city": "Zürich"}, make_ctx())
    assert result["structuredContent"] == {"city": "Zürich", "degrees": 21.5, "unit": "celsius"}
    assert result["content"] == [{"type": "text", "text": '{"city": "Zürich", "degrees": 21.5, "unit": "celsius"}'}]
    assert "isError" not in result


def test_dataclass_result(registry: ToolRegistry) -> None:
    @registry.tool
    def summarise(names: list[str]) -> Summary:
        """Summarise."""
        return Summary(count=len(names), names=names)

    definition = registry.definitions()[0]
    assert definition["outputSchema"]["required"] == ["count", "names"]
    result = registry.call("summarise", {"names": ["a", "b"]}, make_ctx())
    assert result["structuredContent"] == {"count": 2, "names": ["a", "b"]}
    assert json.loads(text_of(result)) == result["structuredContent"]


def test_output_schema_mismatch_is_an_error(registry: ToolRegistry, caplog: pytest.LogCaptureFixture) -> None:
    @registry.tool
    def broken() -> Forecast:
        """Broken."""
        return {"city": "x", "degrees": "warm", "unit": "c", "token": "secret-value"}  # type: ignore[typeddict-item]

    @registry.tool
    def text_instead() -> Forecast:
        """Returns text although it promises an object."""
        return "oops"  # type: ignore[return-value]

    with caplog.at_level(logging.ERROR, logger="mcp.tools"):
        result = registry.call("broken", {}, make_ctx())
        other = registry.call("text_instead", {}, make_ctx())
    assert result == {
        "content": [{"type": "text", "text": "Tool 'broken' failed with an internal error."}],
        "isError": True,
    }
    assert other["isError"] is True
    messages = [r.getMessage() for r in caplog.records]
    assert "result.degrees: expected number, got string" in messages[0]
    assert "result.token: unknown property" in messages[0]
    assert "secret-value" not in "".join(messages)
    assert "expected an object" in messages[1]


def test_unserialisable_result_is_an_internal_error(registry: ToolRegistry, caplog: pytest.LogCaptureFixture) -> None:
    @registry.tool
    def raw() -> object:
        """Raw bytes."""
        return b"\x00"

    @registry.tool
    def nan() -> float:
        """Not a number."""
        return float("nan")

    with caplog.at_level(logging.ERROR, logger="mcp.tools"):
        assert registry.call("raw", {}, make_ctx())["isError"] is True
        assert registry.call("nan", {}, make_ctx())["isError"] is True
    assert len(caplog.records) == 2


def test_tool_result_passthrough(registry: ToolRegistry) -> None:
    image = {"type": "image", "data": "AAAA", "mimeType": "image/png"}

    @registry.tool
    def picture() -> ToolResult:
        """Picture."""
        return ToolResult(content=[image])

    @registry.tool
    def soft_failure() -> ToolResult:
        """Soft failure."""
        return ToolResult(content=[{"type": "text", "text": "nope"}], is_error=True)

    @registry.tool
    def structured() -> Forecast:
        """Structured through ToolResult."""
        return ToolResult(  # type: ignore[return-value]
            content=[{"type": "text", "text": "21.5 degrees"}],
            structured_content={"city": "x", "degrees": 21.5, "unit": "c"},
        )

    @registry.tool
    def wrong_structured() -> Forecast:
        """Wrong structure through ToolResult."""
        return ToolResult(content=[], structured_content={"city": 1})  # type: ignore[return-value]

    ctx = make_ctx()
    assert registry.call("picture", {}, ctx) == {"content": [image]}
    assert registry.call("soft_failure", {}, ctx) == {"content": [{"type": "text", "text": "nope"}], "isError": True}
    assert registry.call("structured", {}, ctx) == {
        "content": [{"type": "text", "text": "21.5 degrees"}],
        "structuredContent": {"city": "x", "degrees": 21.5, "unit": "c"},
    }
    assert registry.call("wrong_structured", {}, ctx)["isError"] is True


def test_results_are_fresh_dicts(registry: ToolRegistry) -> None:
    content = [{"type": "text", "text": "x"}]

    @registry.tool
    def fixed() -> ToolResult:
        """Fixed."""
        return ToolResult(content=content)

    registry.call("fixed", {}, make_ctx())["content"].append({"type": "text", "text": "y"})
    assert content == [{"type": "text", "text": "x"}]


# Async


def test_async_tool_without_running_loop(registry: ToolRegistry) -> None:
    @registry.tool
    async def slow_add(a: int, b: int) -> int:
        """Add, slowly."""
        await asyncio.sleep(0)
        return a + b

    assert text_of(registry.call("slow_add", {"a": 1, "b": 2}, make_ctx())) == "3"


def test_async_tool_while_a_loop_is_running(registry: ToolRegistry) -> None:
    threads: list[str] = []

    @registry.tool
    async def where(ctx: ToolContext) -> str:
        """Report the thread."""
        await asyncio.sleep(0)
        threads.append(threading.current_thread().name)
        return "ok"

    async def host() -> dict[str, Any]:
        # An async host calling the synchronous registry from inside its own loop.
        return registry.call("where", {}, make_ctx())

    assert text_of(asyncio.run(host())) == "ok"
    assert threads[0].startswith("mcp-tool")


def test_async_tool_errors(registry: ToolRegistry) -> None:
    @registry.tool
    async def refuse() -> str:
        """Refuse."""
        raise ToolError("no")

    @registry.tool
    async def crash() -> str:
        """Crash."""
        raise ValueError("internal detail")

    async def host() -> tuple[dict[str, Any], dict[str, Any]]:
        return registry.call("refuse", {}, make_ctx()), registry.call("crash", {}, make_ctx())

    for refused, crashed in (
        (registry.call("refuse", {}, make_ctx()), registry.call("crash", {}, make_ctx())),
        asyncio.run(host()),
    ):
        assert text_of(refused) == "no"
        assert text_of(crashed) == "Tool 'crash' failed with an internal error."


# Context helpers


def test_downstream_token(registry: ToolRegistry) -> None:
    downstream = FakeDownstream()

    @registry.tool
    def graph(ctx: ToolContext) -> str:
        """Call Graph."""
        token = ctx.downstream_token("https://graph.microsoft.com/User.Read")
        return "got one" if token else "none"

    assert text_of(registry.call("graph", {}, make_ctx(downstream=downstream))) == "got one"
    assert downstream.requested == [("https://graph.microsoft.com/User.Read",)]

    result = registry.call("graph", {}, make_ctx())
    assert result == {"content": [{"type": "text", "text": NO_DOWNSTREAM_MESSAGE}], "isError": True}
    assert NO_DOWNSTREAM_MESSAGE.startswith("This server has no on-behalf-of credential configured")


@dataclass
class FakeAsyncDownstream(FakeDownstream):
    """Has the optional get_token_async capability, as shared.downstream.obo.UserDownstream does."""

    awaited: list[tuple[str, ...]] = field(default_factory=list)

    async def get_token_async(self, *scopes: str) -> str:
        self.awaited.append(scopes)
        return "async-downstream-token"


def test_downstream_token_async_awaits_get_token_async_when_there_is_one(registry: ToolRegistry) -> None:
    downstream = FakeAsyncDownstream()

    @registry.tool
    async def graph(ctx: ToolContext) -> str:
        """Call Graph."""
        return await ctx.downstream_token_async("https://graph.microsoft.com/User.Read", "offline_access")

    assert text_of(registry.call("graph", {}, make_ctx(downstream=downstream))) == "async-downstream-token"
    assert downstream.awaited == [("https://graph.microsoft.com/User.Read", "offline_access")]
    assert downstream.requested == []  # the blocking method is not used


def test_downstream_token_async_runs_get_token_off_the_event_loop(registry: ToolRegistry) -> None:
    threads: list[threading.Thread] = []

    class BlockingDownstream(FakeDownstream):
        def get_token(self, *scopes: str) -> str:
            threads.append(threading.current_thread())
            return super().get_token(*scopes)

    downstream = BlockingDownstream()

    @registry.tool
    async def graph(ctx: ToolContext) -> str:
        """Call Graph."""
        loop_thread = threading.current_thread()
        token = await ctx.downstream_token_async("https://graph.microsoft.com/User.Read")
        return f"{token} {threads[0] is not loop_thread}"

    assert text_of(registry.call("graph", {}, make_ctx(downstream=downstream))) == "downstream-token True"
    assert downstream.requested == [("https://graph.microsoft.com/User.Read",)]


def test_downstream_token_async_without_a_credential_is_a_tool_error(registry: ToolRegistry) -> None:
    @registry.tool
    async def graph(ctx: ToolContext) -> str:
        """Call Graph."""
        return await ctx.downstream_token_async("https://graph.microsoft.com/User.Read")

    result = registry.call("graph", {}, make_ctx())
    assert result == {"content": [{"type": "text", "text": NO_DOWNSTREAM_MESSAGE}], "isError": True}
    with pytest.raises(ToolError, match="no on-behalf-of credential"):
        asyncio.run(make_ctx().downstream_token_async("x"))


def test_the_obo_downstream_offers_get_token_async() -> None:
    obo = pytest.importorskip("shared.downstream.obo")
    assert inspect.iscoroutinefunction(obo.UserDownstream.get_token_async)


def test_context_defaults() -> None:
    ctx = ToolContext(caller=FakeCaller(), request=RequestInfo("2025-06-18"))
    assert ctx.log.name == "mcp.tools"
    assert ctx.downstream is None
    assert ctx.request.client_info == {} and ctx.request.client_capabilities == {}


def test_forker_imports_and_leaf_modules() -> None:
    import subprocess
    import sys

    import shared.features.context
    import shared.features.errors
    import shared.features.schema
    import shared.tools

    assert shared.tools.Param is shared.features.schema.Param and "Param" in shared.tools.__all__
    assert shared.tools.ToolContext is shared.features.context.ToolContext
    assert shared.tools.ToolError is shared.features.errors.ToolError
    assert all(hasattr(shared.tools, name) for name in shared.tools.__all__)
    # The context and the errors import no registry (so the registries can all import them), and every
    # module imports on its own in a fresh interpreter (no import cycles hidden by import order).
    probe = """
import importlib, pkgutil, sys
import shared.features.context
import shared.features.errors
import shared
assert not {"shared.features.tools", "shared.features.prompts", "shared.features.resources",
            "shared.features.callables"} & set(sys.modules)
for module in pkgutil.walk_packages(shared.__path__, "shared."):
    for loaded in [name for name in sys.modules if name.startswith("shared.")]:
        del sys.modules[loaded]
    importlib.import_module(module.name)
"""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60, cwd=root)


def test_tool_annotations_to_json() -> None:
    assert ToolAnnotations().to_json() == {}
    assert ToolAnnotations(
        title="T", read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
    ).to_json() == {
        "title": "T",
        "readOnlyHint": False,
        "destructiveHint": True,
        "idempotentHint": True,
        "openWorldHint": False,
    }


# --------------------------------------------------------------------------------------------------
# The forker's tools.py


def test_whoami() -> None:
    import tools as forker_tools

    caller = FakeCaller(
        claims={
            "name": "Ada Lovelace",
            "preferred_username": "ada@contoso.com",
            "oid": "o-1",
            "tid": "t-1",
            "azp": "c",
        },
        scopes=frozenset({"user_impersonation", "Mail.Read"}),
    )
    result = forker_tools.tools.call("whoami", {}, make_ctx(caller))
    expected = {
        "name": "Ada Lovelace",
        "preferred_username": "ada@contoso.com",
        "oid": "o-1",
        "tid": "t-1",
        "scopes": ["Mail.Read", "user_impersonation"],
        "client_app_id": "c",
        "kind": "user",
        "roles": [],
    }
    assert result == {"content": [{"type": "text", "text": json.dumps(expected)}], "structuredContent": expected}


def test_whoami_v1_appid_and_missing_claims() -> None:
    import tools as forker_tools

    result = forker_tools.tools.call("whoami", None, make_ctx(FakeCaller(claims={"appid": "v1"}, scopes=frozenset())))
    assert result["structuredContent"] == {
        "name": "",
        "preferred_username": "",
        "oid": "",
        "tid": "",
        "scopes": [],
        "client_app_id": "v1",
        "kind": "user",
        "roles": [],
    }


def test_whoami_definition() -> None:
    import tools as forker_tools

    definition = forker_tools.tools.definitions()[0]
    assert definition["name"] == "whoami"
    assert definition["annotations"] == {"title": "Who am I", "readOnlyHint": True, "openWorldHint": False}
    assert definition["inputSchema"] == {"type": "object", "properties": {}, "additionalProperties": False}
    assert definition["outputSchema"]["required"] == [
        "name",
        "preferred_username",
        "oid",
        "tid",
        "scopes",
        "client_app_id",
        "kind",
        "roles",
    ]
    assert forker_tools.whoami.__name__ == "whoami"  # the decorator returned the plain function


def test_whoami_with_the_real_principal() -> None:
    tokens = pytest.importorskip("shared.entra.tokens")
    import tools as forker_tools

    principal = tokens.Principal(claims={"name": "Ada", "azp": "c"}, scopes=frozenset({"user_impersonation"}))
    result = forker_tools.tools.call("whoami", {}, make_ctx(principal))
    assert result["structuredContent"]["scopes"] == ["user_impersonation"]
    assert result["structuredContent"]["client_app_id"] == "c"
