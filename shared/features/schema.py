"""Type hints -> JSON Schema (2020-12), plus a small validator for exactly the subset we emit.

Tools are described to the model with JSON Schema generated from their Python signatures, and the
arguments the model sends back are checked against that same schema before the tool runs. Generating
and validating our own subset keeps cold starts fast and the dependency list short; the subset is:

    type (string or list), enum, const, properties, required, additionalProperties (bool or schema),
    items, prefixItems, minItems, maxItems, uniqueItems, anyOf, minimum, maximum, minLength,
    maxLength, pattern; description, default, title and x-mcp-header are annotations and never checked.

Supported hints: str, int, float, bool, None, Any, list[T] / Sequence[T], tuple[T, ...], tuple[A, B],
set[T] / frozenset[T], dict[str, T] / Mapping[str, T], Optional[T] / T | None, Union, Literal[...],
enum.Enum subclasses, TypedDict, dataclasses, NewType and ``type X = ...`` aliases, and
Annotated[T, "description"] / Annotated[T, Param(...)]. Anything else raises TypeError.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import dataclasses
import enum
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["HEADER_KEY", "MAX_DEPTH", "MAX_ERRORS", "Param", "add_default", "converter_for", "schema_for", "validate"]

MAX_ERRORS = 10
MAX_DEPTH = 32

_NONE_TYPE = type(None)
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", _NONE_TYPE: "null"}
_ARRAY_ORIGINS = (list, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable)
_SET_ORIGINS = (set, frozenset, abc.Set, abc.MutableSet)
_OBJECT_ORIGINS = (dict, abc.Mapping, abc.MutableMapping)
# Wrappers that only matter to type checkers; ReadOnly exists from 3.13 on.
_TRANSPARENT = tuple(w for w in (typing.Required, typing.NotRequired, getattr(typing, "ReadOnly", None)) if w)
_TYPE_ALIAS = getattr(typing, "TypeAliasType", None)  # 3.12+: `type X = ...`
HEADER_KEY = "x-mcp-header"
# 2026-07-28: mirrored integers must stay exact in JavaScript clients (IEEE 754 doubles).
_SAFE_INTEGER = 2**53 - 1


@dataclasses.dataclass(frozen=True)
class Param:
    """Constraints and documentation for one value, used as ``Annotated[int, Param(minimum=1)]``.

    ``minimum``/``maximum`` apply to numbers, ``pattern`` to strings, ``min_length``/``max_length`` to
    strings (characters) and to lists (items).

    ``pattern`` is a JSON Schema pattern: an ECMA-262 regular expression, unanchored, checked with the
    meaning clients see (``$`` is the end of the string, ``\\d``/``\\w``/``\\b`` are ASCII, ``.`` stops
    at line terminators, ``\\s`` is ECMA-262 white space), not Python's. Python-only syntax (``\\A``,
    ``\\Z``, inline flags, ``(?P<name>...)``, atomic groups, possessive quantifiers) fails at start-up.
    It needs ``max_length``: the pattern only ever runs on a string within it, which bounds what a
    long argument can make it cost. Required rather than implied, so that no limit the forker did not
    choose silently refuses long, valid arguments; it is advertised as ``maxLength``, so clients see it.
    That bounds the input, not the pattern: keep patterns free of nested quantifiers such as
    ``(a+)+``, whose cost grows exponentially even on short strings.

    ``header="Region"`` mirrors the value into an ``Mcp-Param-Region`` HTTP header (the 2026-07-28
    ``x-mcp-header`` extension), so gateways can route on it without reading the body. Only str, int
    and bool values qualify; ``ToolRegistry`` checks the name and the placement when the tool is
    registered. ``Optional[T]`` is advertised as plain ``T``: clients omit the header for a missing
    value, so "not given" means leaving the argument out, not sending null. Headers are visible to
    every proxy on the way: never mirror secrets or personal data.
    """

    description: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    header: str | None = None

    def __post_init__(self) -> None:
        if self.header is not None and not isinstance(self.header, str):
            raise TypeError("Param(header=...) must be a str")
        for name in ("min_length", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise TypeError(f"Param({name}=...) must be a non-negative int")
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                raise TypeError("Param(pattern=...) must be a str")
            try:
                _compile_pattern(self.pattern)
            except (ValueError, re.error) as exc:
                raise TypeError(f"Param(pattern={self.pattern!r}) is not a JSON Schema (ECMA-262) regular "
                                f"expression this server can check: {exc}") from None
            if self.max_length is None:
                raise TypeError(f"Param(pattern={self.pattern!r}) needs max_length=...: the pattern only runs on "
                                "strings within it, which bounds what a long argument can make it cost")


# --------------------------------------------------------------------------------------------------
# Type hints -> schema


def schema_for(tp: Any) -> dict[str, Any]:
    """Return a fresh JSON Schema dict for the type hint ``tp``; raise TypeError if it is unsupported."""
    return _schema(tp, ())


def _unwrap(tp: Any) -> Any:
    """Strip the wrappers that do not change the JSON shape (NewType, type aliases, Required, ...)."""
    while True:
        if tp is None:
            return _NONE_TYPE
        if _TYPE_ALIAS is not None and isinstance(tp, _TYPE_ALIAS):
            tp = tp.__value__
        elif hasattr(tp, "__supertype__"):  # typing.NewType
            tp = tp.__supertype__
        elif typing.get_origin(tp) in _TRANSPARENT:
            tp = typing.get_args(tp)[0]
        else:
            return tp


def _is_typeddict(tp: Any) -> bool:
    # Duck-typed so typing_extensions.TypedDict classes count as well.
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _json_type_of_value(value: Any) -> str | None:
    for py_type in (bool, int, float, str, _NONE_TYPE):  # bool first: it is a subclass of int
        if isinstance(value, py_type):
            return _PRIMITIVES[py_type]
    return None


def _enum_schema(values: list[Any], what: str) -> dict[str, Any]:
    kinds = {_json_type_of_value(v) for v in values}
    if None in kinds or any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise TypeError(f"{what} values must be str, int, float, bool or None")
    return {"type": kinds.pop(), "enum": values} if len(kinds) == 1 else {"enum": values}


def _schema(tp: Any, seen: tuple[type, ...]) -> dict[str, Any]:
    tp = _unwrap(tp)
    if tp is Any:
        return {}
    if isinstance(tp, type) and tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is typing.Annotated:
        return _annotated(args[0], tp.__metadata__, seen)
    if _is_union(origin):
        # Null goes last so Optional[T] always reads as {"anyOf": [T, {"type": "null"}]}.
        members = sorted(args, key=lambda a: a is _NONE_TYPE)
        branches = [_schema(a, seen) for a in members]
        if len(branches) == 2 and members[1] is _NONE_TYPE and HEADER_KEY in branches[0]:
            return branches[0]  # Optional[Annotated[T, Param(header=...)]]: see _header_property.
        return {"anyOf": branches}
    if origin is typing.Literal:
        return _enum_schema(list(args), "Literal")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([m.value for m in tp], f"Enum {tp.__name__}")

    if tp is tuple or origin is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return _array(args[0] if args else Any, seen)
        if args == ((),):  # tuple[()]: the empty tuple
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "prefixItems": [_schema(a, seen) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if tp in _ARRAY_ORIGINS or origin in _ARRAY_ORIGINS:
        return _array(args[0] if args else Any, seen)
    if tp in _SET_ORIGINS or origin in _SET_ORIGINS:
        return {**_array(args[0] if args else Any, seen), "uniqueItems": True}
    if tp in _OBJECT_ORIGINS or origin in _OBJECT_ORIGINS:
        key, value = args if args else (str, Any)
        if _unwrap(key) is not str:
            raise TypeError(f"mapping keys must be str (JSON object keys are strings), not {key!r}")
        value_schema = _schema(value, seen)
        return {"type": "object", "additionalProperties": value_schema} if value_schema else {"type": "object"}

    if _is_typeddict(tp) or _is_dataclass_type(tp):
        if tp in seen:
            raise TypeError(f"recursive type {tp.__name__} is not supported")
        return _record(tp, (*seen, tp))

    raise TypeError(f"unsupported type {_type_name(tp)}")


def _array(item: Any, seen: tuple[type, ...]) -> dict[str, Any]:
    item_schema = _schema(item, seen)
    return {"type": "array", "items": item_schema} if item_schema else {"type": "array"}


def _record(tp: type, seen: tuple[type, ...]) -> dict[str, Any]:
    """TypedDicts and dataclasses become closed objects: unknown keys are mistakes worth reporting."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:  # unresolvable forward references and the like
        raise TypeError(f"cannot resolve the annotations of {tp.__name__}: {exc}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    if _is_typeddict(tp):
        for name, hint in hints.items():
            properties[name] = _field(tp, name, hint, seen)
            # Ask the hint first: with `from __future__ import annotations`, Python 3.11 computes
            # __required_keys__ from unevaluated strings and misses NotRequired/Required.
            wrapper = typing.get_origin(hint)
            if wrapper is typing.Annotated:
                wrapper = typing.get_origin(typing.get_args(hint)[0])
            if wrapper is typing.Required or (
                wrapper is not typing.NotRequired and name in tp.__required_keys__  # type: ignore[attr-defined]
            ):
                required.append(name)
    else:
        for field in dataclasses.fields(tp):
            if not field.init:
                continue
            properties[field.name] = prop = _field(tp, field.name, hints[field.name], seen)
            if field.default is not dataclasses.MISSING:
                add_default(prop, field.default)
            elif field.default_factory is dataclasses.MISSING:
                required.append(field.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _field(owner: type, name: str, hint: Any, seen: tuple[type, ...]) -> dict[str, Any]:
    try:
        return _schema(hint, seen)
    except TypeError as exc:
        raise TypeError(f"field {owner.__name__}.{name}: {exc}") from None


def _annotated(inner: Any, metadata: tuple[Any, ...], seen: tuple[type, ...]) -> dict[str, Any]:
    schema = _schema(inner, seen)
    description = None
    for meta in metadata:
        if isinstance(meta, str):
            description = meta
        elif isinstance(meta, Param):
            _apply_param(schema, meta, inner)
            description = meta.description or description
        # Other metadata belongs to other libraries; ignoring it is what Annotated is for.
    if description:
        schema["description"] = description
    headers = [meta.header for meta in metadata if isinstance(meta, Param) and meta.header is not None]
    return _header_property(schema, headers[-1]) if headers else schema


def _header_property(schema: dict[str, Any], header: str) -> dict[str, Any]:
    """Mark ``schema`` as mirrored into the ``Mcp-Param-{header}`` HTTP header.

    Clients only accept x-mcp-header on a property whose ``type`` is one of string/integer/boolean,
    and the reference SDK client drops the whole tool otherwise; ``{"anyOf": [T, null]}`` has no
    ``type``. So Optional[T] is advertised as T: the spec has clients omit the header for null, and
    leaving the argument out gives the function its default. ToolRegistry rejects the other misuses.
    """
    branches = schema.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and branches[1] == {"type": "null"}:
        schema = {**branches[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    if schema.get("type") == "integer":
        schema["minimum"] = max(schema.get("minimum", -_SAFE_INTEGER), -_SAFE_INTEGER)
        schema["maximum"] = min(schema.get("maximum", _SAFE_INTEGER), _SAFE_INTEGER)
    schema[HEADER_KEY] = header
    return schema


def _apply_param(schema: dict[str, Any], param: Param, inner: Any) -> None:
    # For Optional[T] the constraints belong on T's branch, where clients can see what they constrain.
    targets = [s for s in schema.get("anyOf", [schema]) if isinstance(s, dict)]
    groups: list[tuple[set[str], dict[str, Any]]] = [
        ({"integer", "number"}, {"minimum": param.minimum, "maximum": param.maximum}),
        ({"string"}, {"minLength": param.min_length, "maxLength": param.max_length, "pattern": param.pattern}),
        ({"array"}, {"minItems": param.min_length, "maxItems": param.max_length}),
    ]
    unused = {k for k in ("minimum", "maximum", "min_length", "max_length", "pattern") if getattr(param, k) is not None}
    for kinds, keywords in groups:
        keywords = {k: v for k, v in keywords.items() if v is not None}
        for target in targets:
            if keywords and target.get("type") in kinds:
                target.update(keywords)
                unused -= {_PARAM_FIELD[k] for k in keywords}
    if unused:
        raise TypeError(f"Param({', '.join(sorted(unused))}=...) does not apply to {_type_name(inner)}")


_PARAM_FIELD = {
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "pattern": "pattern",
}


def add_default(schema: dict[str, Any], default: Any) -> None:
    """Record ``default`` in ``schema`` when it survives a strict JSON round trip; skip it otherwise."""
    if isinstance(default, enum.Enum):
        default = default.value
    # Not JSON (e.g. a sentinel object)? The parameter is still optional, just without a documented default.
    with contextlib.suppress(TypeError, ValueError):
        schema["default"] = json.loads(json.dumps(default, allow_nan=False))


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) and not typing.get_args(tp) else repr(tp)


# --------------------------------------------------------------------------------------------------
# Type hints -> converters (validated JSON value -> the Python value the function expects)

Converter = Callable[[Any], Any]


def _list_of(convert: Converter) -> Converter:
    return lambda v: [convert(x) for x in v]


def _dict_of(convert: Converter) -> Converter:
    return lambda v: {k: convert(x) for k, x in v.items()}


def converter_for(tp: Any) -> Converter | None:
    """Return a function turning a value already valid for ``schema_for(tp)`` into what ``tp`` promises.

    Integer-valued floats become int, enum values become members, dataclasses are constructed, tuples
    and sets are built. Returns None when the JSON value can be passed through unchanged (the common case).
    """
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is int:
        return _to_int
    if origin is typing.Annotated:
        return converter_for(args[0])
    if origin is typing.Literal:
        has_int = any(type(a) is int for a in args)
        return _to_int if has_int else None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if _is_union(origin):
        return _union_converter(args)
    if tp is tuple or origin is tuple:
        if args and not (len(args) == 2 and args[1] is Ellipsis) and args != ((),):
            convs = [converter_for(a) for a in args]
            return lambda v: tuple(c(x) if c else x for c, x in zip(convs, v, strict=True))
        return _each(args[0] if args else Any, tuple)
    if tp in (set, frozenset) or origin in (set, frozenset, abc.Set, abc.MutableSet):
        return _each(args[0] if args else Any, frozenset if frozenset in (tp, origin) else set)
    if origin in _ARRAY_ORIGINS and args:
        item = converter_for(args[0])
        return _list_of(item) if item else None
    if origin in _OBJECT_ORIGINS and args:
        value = converter_for(args[1])
        return _dict_of(value) if value else None
    if _is_typeddict(tp) or _is_dataclass_type(tp):
        return _record_converter(tp)
    return None


def _to_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) else value


def _each(item: Any, container: Callable[[Any], Any]) -> Converter:
    conv = converter_for(item)
    return (lambda v: container(conv(x) for x in v)) if conv else container


def _union_converter(members: tuple[Any, ...]) -> Converter | None:
    convs = [(schema_for(m), converter_for(m)) for m in members]
    if not any(conv for _, conv in convs):
        return None

    def convert(value: Any) -> Any:
        # The first member the value is valid for decides, mirroring how anyOf accepted it.
        for schema, conv in convs:
            if not validate(value, schema, max_errors=1):
                return conv(value) if conv else value
        return value

    return convert


def _record_converter(tp: type) -> Converter | None:
    hints = typing.get_type_hints(tp, include_extras=True)
    convs = {name: conv for name, hint in hints.items() if (conv := converter_for(hint))}
    if _is_typeddict(tp):
        if not convs:
            return None
        return lambda v: {k: convs[k](x) if k in convs else x for k, x in v.items()}
    return lambda v: tp(**{k: convs[k](x) if k in convs else x for k, x in v.items()})


# --------------------------------------------------------------------------------------------------
# Validation


class _TooManyErrors(Exception):
    pass


class _Errors:
    def __init__(self, limit: int) -> None:
        self.items: list[str] = []
        self.limit = limit
        self.truncated = False

    def add(self, path: str, message: str) -> None:
        self.add_raw(f"{path}: {message}")

    def add_raw(self, line: str) -> None:
        if len(self.items) >= self.limit:
            self.truncated = True
            raise _TooManyErrors
        self.items.append(line)


def validate(
    instance: Any, schema: Mapping[str, Any] | bool, *, root: str = "$", max_errors: int = MAX_ERRORS
) -> list[str]:
    """Validate ``instance`` against ``schema``; return human-readable errors, [] when valid.

    Paths start at ``root`` ("arguments.items[2].name"). At most ``max_errors`` errors are reported (a
    final "more errors omitted" line says when there were more) and nesting deeper than MAX_DEPTH is
    rejected, so hostile input cannot make validation slow. Values are never echoed into messages.
    """
    errors = _Errors(max(1, max_errors))
    with contextlib.suppress(_TooManyErrors):
        _check(instance, schema, root, 0, errors)
    if errors.truncated:
        return [*errors.items, f"{root}: more errors omitted"]
    return errors.items


_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


# Exact types first: validation runs on every call's arguments and structured result.
_EXACT_TYPE_NAMES = {bool: "boolean", int: "integer", str: "string", dict: "object", list: "array",
                     type(None): "null"}


def _type_of(value: Any) -> str:
    name = _EXACT_TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "non-finite number"
        return "number"
    for py_type, name in _JSON_TYPE_NAMES.items():
        if isinstance(value, py_type):
            return name
    if isinstance(value, Mapping):  # e.g. a MappingProxyType handed to ToolRegistry.call
        return "object"
    return type(value).__name__


def _has_type(value: Any, expected: str) -> bool:
    actual = _type_of(value)
    if actual == expected:
        return True
    if expected == "number":
        return actual == "integer"
    if expected == "integer":
        return actual == "number" and value.is_integer()  # 1.0 is an integer in JSON Schema
    return False


def _check(value: Any, schema: Mapping[str, Any] | bool, path: str, depth: int, errors: _Errors) -> None:
    if schema is True:
        return
    if schema is False:
        errors.add(path, "no value is allowed here")
        return
    if depth > MAX_DEPTH:
        errors.add(path, "value is nested too deeply")
        return

    expected = schema.get("type")
    if expected is not None:
        if isinstance(expected, str):
            matches = _has_type(value, expected)
        else:
            matches = any(_has_type(value, t) for t in expected)
        if not matches:
            expected_list = [expected] if isinstance(expected, str) else list(expected)
            errors.add(path, f"expected {' or '.join(expected_list)}, got {_type_of(value)}")
            return  # Everything else would only repeat the same mistake.

    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        errors.add(path, f"expected one of {_list_values(schema['enum'])}")
        return
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.add(path, f"expected {_list_values([schema['const']])}")
        return
    if "anyOf" in schema:
        _check_any_of(value, schema["anyOf"], path, depth, errors)

    kind = _type_of(value)
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.add(path, f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.add(path, f"must be <= {schema['maximum']}")
    elif kind == "string":
        too_short = "minLength" in schema and len(value) < schema["minLength"]
        too_long = "maxLength" in schema and len(value) > schema["maxLength"]
        if too_short:
            errors.add(path, f"must be at least {schema['minLength']} characters long")
        if too_long:
            errors.add(path, f"must be at most {schema['maxLength']} characters long")
        # A pattern runs only on strings within the length bounds, so max_length also bounds
        # the cost of a pattern that backtracks (Param requires one with a pattern).
        elif "pattern" in schema:
            compiled = _compiled(schema["pattern"])
            if compiled is None:  # a hand-written schema: refuse rather than guess
                errors.add(path, "cannot be checked against this schema's pattern")
            elif not compiled.search(value):
                errors.add(path, f"must match the pattern {schema['pattern']!r}")
    elif kind == "array":
        _check_array(value, schema, path, depth, errors)
    elif kind == "object":
        _check_object(value, schema, path, depth, errors)


def _check_any_of(value: Any, branches: list[Any], path: str, depth: int, errors: _Errors) -> None:
    failures = []
    for branch in branches:
        branch_errors = _Errors(errors.limit)
        with contextlib.suppress(_TooManyErrors):
            _check(value, branch, path, depth + 1, branch_errors)
        if not branch_errors.items:
            return
        failures.append((branch, branch_errors.items))
    # If exactly one branch has the value's type (the usual Optional[T] case), its errors are the useful ones.
    typed = [f for f in failures if isinstance(f[0], Mapping) and _branch_accepts_type(value, f[0])]
    if len(typed) == 1:
        for line in typed[0][1]:
            errors.add_raw(line)
        return
    kinds = [_describe(b) for b in branches]
    errors.add(path, f"expected {' or '.join(kinds)}, got {_type_of(value)}")


def _branch_accepts_type(value: Any, branch: Mapping[str, Any]) -> bool:
    expected = branch.get("type")
    if expected is None:
        return True
    return any(_has_type(value, t) for t in ([expected] if isinstance(expected, str) else expected))


def _describe(schema: Any) -> str:
    if isinstance(schema, Mapping):
        if "enum" in schema:
            return f"one of {_list_values(schema['enum'])}"
        expected = schema.get("type")
        if isinstance(expected, str):
            return expected
        if isinstance(expected, list):
            return " or ".join(expected)
    return "a value of another shape"


def _check_array(value: list[Any], schema: Mapping[str, Any], path: str, depth: int, errors: _Errors) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.add(path, f"expected at least {schema['minItems']} items, got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.add(path, f"expected at most {schema['maxItems']} items, got {len(value)}")
    prefix = schema.get("prefixItems", [])
    for index, (item, item_schema) in enumerate(zip(value, prefix, strict=False)):
        _check(item, item_schema, f"{path}[{index}]", depth + 1, errors)
    if "items" in schema:
        for index in range(len(prefix), len(value)):
            _check(value[index], schema["items"], f"{path}[{index}]", depth + 1, errors)
    if schema.get("uniqueItems"):
        seen: set[Any] = set()
        for index, item in enumerate(value):
            key = _canonical(item, depth)
            if key in seen:
                errors.add(f"{path}[{index}]", "duplicate item; items must be unique")
            seen.add(key)


def _check_object(value: Mapping[Any, Any], schema: Mapping[str, Any], path: str, depth: int, errors: _Errors) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            errors.add(_child(path, name), "missing required property")
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        if not isinstance(name, str):
            errors.add(path, f"object keys must be strings, got {_type_of(name)}")
        elif name in properties:
            _check(item, properties[name], _child(path, name), depth + 1, errors)
        elif additional is False:
            allowed = ", ".join(list(properties)[:20]) or "none"
            errors.add(_child(path, name), f"unknown property (allowed: {allowed})")
        else:
            _check(item, additional, _child(path, name), depth + 1, errors)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=1024)  # the same few paths on every call; bounded against hostile names
def _child(path: str, name: str) -> str:
    if _IDENTIFIER.fullmatch(name) and len(name) <= 64:
        return f"{path}.{name}"
    # Property names come from the caller: quote odd ones and keep long ones from bloating the message.
    shown = name if len(name) <= 64 else name[:61] + "..."
    return f"{path}[{json.dumps(shown)}]"


def _list_values(values: list[Any]) -> str:
    shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in values[:20])
    return shown + (", ..." if len(values) > 20 else "")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled with its JSON Schema meaning, or None when this server cannot check it."""
    try:
        return _compile_pattern(pattern)
    except (ValueError, re.error):
        return None


# --------------------------------------------------------------------------------------------------
# JSON Schema (ECMA-262) patterns -> Python regular expressions with the same meaning
#
# JSON Schema says a pattern is an ECMA-262 regular expression, and that is what clients (and the model
# reading the schema) go by. Python's `re` reads the same text differently in ways that let through what
# the schema forbids: `$` also matches before a final newline ("ok\n" passes ^[a-z]+$), \d and \w match
# any Unicode digit or letter, `.` matches \r and the Unicode line separators. So the server never runs
# the text as Python: it is translated token by token (outside character classes `$` -> \Z and `.` ->
# [^\n\r\u2028\u2029]; \s and \S -> the ECMA-262 WhiteSpace and LineTerminator set, which is neither
# Python's Unicode set nor its ASCII one) and compiled with re.ASCII, which makes \d, \w and \b the ASCII
# classes ECMA-262 defines. Constructs only Python has, which clients would reject or read otherwise, are
# refused when the Param is created rather than given a meaning of our choosing.

# ECMA-262 \s: WhiteSpace (TAB, VT, FF, SP, NBSP, ZWNBSP, every Zs) and LineTerminator (LF, CR, LS, PS).
_ECMA_SPACE = r"\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_ECMA_DOT = r"[^\n\r\u2028\u2029]"
_QUANTIFIER = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(_python_regex(pattern), re.ASCII)


def _python_regex(pattern: str) -> str:
    """Translate a JSON Schema pattern into a Python regex with the same meaning; ValueError if unsupported."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    quantifier = ""  # "greedy" right after a quantifier, "lazy" after its `?`: a `+` then is possessive
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 == n:
                raise ValueError("it ends with a lone backslash")
            escaped = pattern[i + 1]
            if escaped == "s":
                out.append(_ECMA_SPACE if in_class else f"[{_ECMA_SPACE}]")
            elif escaped == "S":
                if in_class:
                    raise ValueError("\\S inside [...] is not supported; write the class another way")
                out.append(f"[^{_ECMA_SPACE}]")
            elif escaped in "AZz" and not in_class:
                raise ValueError(f"\\{escaped} is Python syntax; JSON Schema patterns anchor with ^ and $")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            quantifier = ""
            continue
        if in_class:
            in_class = c != "]"
            out.append(c)
            i += 1
            continue
        if c == "[":
            start = i + 2 if pattern.startswith("[^", i) else i + 1
            if pattern.startswith("]", start):
                raise ValueError("[] and [^] mean different things in Python and ECMA-262; write \\] for a ]")
            out.append(pattern[i:start])
            in_class, i, quantifier = True, start, ""
            continue
        if c == "(" and pattern.startswith("(?", i):
            group = next((g for g in _GROUPS if pattern.startswith(g, i)), None)
            if group is None:
                raise ValueError(f"{pattern[i:i + 3]!r}... is not a group JSON Schema patterns have (no inline "
                                 "flags, comments, named, atomic or conditional groups)")
            out.append(group)
            i += len(group)
            quantifier = ""
            continue
        if c in "*+?":
            if c == "+" and quantifier:
                raise ValueError("possessive quantifiers (*+, ++, ?+, {n}+) are Python syntax")
            quantifier = "lazy" if c == "?" and quantifier == "greedy" else "greedy"
            out.append(c)
            i += 1
            continue
        if c == "{":
            match = _QUANTIFIER.match(pattern, i)
            if match:
                if quantifier:
                    raise ValueError("a quantifier cannot follow a quantifier")
                out.append(match.group())
                i = match.end()
                quantifier = "greedy"
                continue
            if re.match(r"\{,[0-9]+\}", pattern[i:]):
                raise ValueError("{,n} is Python syntax; write {0,n}")
        if c == "$":
            out.append(r"\Z")
        elif c == ".":
            out.append(_ECMA_DOT)
        else:
            out.append(c)
        i += 1
        quantifier = ""
    if in_class:
        raise ValueError("a [ is never closed")
    return "".join(out)


def _json_equal(a: Any, b: Any) -> bool:
    return _canonical(a, 0) == _canonical(b, 0)


def _canonical(value: Any, depth: int) -> Any:
    """A hashable form with JSON equality: 1 == 1.0, but True != 1 and {"a": 1} == {"a": 1.0}."""
    if depth > MAX_DEPTH:
        return ("deep", id(value))  # Never equal to anything else; depth is rejected elsewhere anyway.
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_canonical(v, depth + 1) for v in value))
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _canonical(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, (str, type(None))):
        return (type(value).__name__, value)
    return ("other", id(value))
