"""Type hints -> JSON Schema, hint -> converter, and the validator for the emitted subset."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NewType, NotRequired, Optional, TypedDict, Union

import pytest

from shared.features.schema import MAX_DEPTH, Param, converter_for, schema_for, validate


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mixed(enum.Enum):
    ONE = 1
    TWO = "two"


class Point(TypedDict):
    x: int
    y: int


class Movie(TypedDict, total=False):
    title: str
    year: Annotated[int, "Release year"]


class Partial(TypedDict):
    id: str
    note: NotRequired[str]


@dataclass
class Address:
    street: str
    city: str = "Paris"
    tags: list[str] = field(default_factory=list)


@dataclass
class Person:
    name: str
    address: Address
    colour: Colour = Colour.RED


UserId = NewType("UserId", str)


# --------------------------------------------------------------------------------------------------
# schema_for


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (UserId, {"type": "string"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array"}),
        (list[Any], {"type": "array"}),
        (Sequence[str], {"type": "array", "items": {"type": "string"}}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (frozenset[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (Mapping[str, Any], {"type": "object"}),
        (dict, {"type": "object"}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045 - the old spelling
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (None | int, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),  # noqa: UP007
        (int | str | None, {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
        (Literal[1, "x"], {"enum": [1, "x"]}),
        (Literal[True], {"type": "boolean", "enum": [True]}),
        (Colour, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Mixed, {"enum": [1, "two"]}),
    ],
)
def test_schema_for_supported_hints(hint: Any, expected: dict[str, Any]) -> None:
    assert schema_for(hint) == expected


def test_schema_for_returns_fresh_dicts() -> None:
    first = schema_for(list[int])
    first["items"]["type"] = "mutated"
    assert schema_for(list[int]) == {"type": "array", "items": {"type": "integer"}}


def test_annotated_string_is_description() -> None:
    assert schema_for(Annotated[int, "How many"]) == {"type": "integer", "description": "How many"}


def test_annotated_param_constraints() -> None:
    hint = Annotated[str, Param(description="Name", min_length=1, max_length=5, pattern="^[a-z]+$")]
    assert schema_for(hint) == {
        "type": "string",
        "minLength": 1,
        "maxLength": 5,
        "pattern": "^[a-z]+$",
        "description": "Name",
    }
    assert schema_for(Annotated[float, Param(minimum=0, maximum=1.5)]) == {
        "type": "number",
        "minimum": 0,
        "maximum": 1.5,
    }
    assert schema_for(Annotated[list[int], Param(min_length=1, max_length=3)]) == {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 1,
        "maxItems": 3,
    }


def test_param_constraints_go_into_the_optional_branch() -> None:
    assert schema_for(Annotated[int | None, Param(minimum=1, description="d")]) == {
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
        "description": "d",
    }


def test_param_on_the_wrong_type_fails_early() -> None:
    with pytest.raises(TypeError, match="minimum"):
        schema_for(Annotated[str, Param(minimum=1)])
    with pytest.raises(TypeError, match="pattern"):
        schema_for(Annotated[int, Param(pattern="x", max_length=3)])


def test_param_rejects_bad_values() -> None:
    with pytest.raises(TypeError, match="regular expression"):
        Param(pattern="(")
    with pytest.raises(TypeError, match="min_length"):
        Param(min_length=-1)


def test_param_header_marks_the_property() -> None:
    assert schema_for(Annotated[str, Param(description="Region", header="Region")]) == {
        "type": "string",
        "description": "Region",
        "x-mcp-header": "Region",
    }
    assert schema_for(Annotated[bool, Param(header="Dry-Run")]) == {"type": "boolean", "x-mcp-header": "Dry-Run"}
    assert schema_for(Annotated[Literal["eu", "us"], Param(header="Geo")]) == {
        "type": "string",
        "enum": ["eu", "us"],
        "x-mcp-header": "Geo",
    }


def test_param_header_keeps_integers_in_the_javascript_safe_range() -> None:
    safe = 2**53 - 1
    assert schema_for(Annotated[int, Param(header="N")]) == {
        "type": "integer", "minimum": -safe, "maximum": safe, "x-mcp-header": "N",
    }
    assert schema_for(Annotated[int, Param(header="N", minimum=1, maximum=10**20)]) == {
        "type": "integer", "minimum": 1, "maximum": safe, "x-mcp-header": "N",
    }


def test_param_header_on_optional_is_advertised_as_the_plain_type() -> None:
    # Clients (the reference SDK among them) accept x-mcp-header only next to a single primitive "type",
    # and omit the header for null: so Optional[T] with a header is advertised as T, on the property.
    expected = {"type": "string", "maxLength": 8, "description": "d", "x-mcp-header": "Region"}
    assert schema_for(Annotated[str | None, Param(description="d", max_length=8, header="Region")]) == expected
    assert schema_for(Annotated[str, Param(description="d", max_length=8, header="Region")] | None) == expected
    # Other unions are left alone (ToolRegistry refuses a header there).
    assert "anyOf" in schema_for(Annotated[int | str, Param(header="X")])
    assert "x-mcp-header" not in schema_for(Annotated[str | None, Param(description="d")])


def test_param_header_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="header"):
        Param(header=1)  # type: ignore[arg-type]


def test_other_annotated_metadata_is_ignored() -> None:
    assert schema_for(Annotated[int, object()]) == {"type": "integer"}


def test_typeddict_schema() -> None:
    assert schema_for(Point) == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "required": ["x", "y"],
        "additionalProperties": False,
    }
    assert schema_for(Movie) == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer", "description": "Release year"}},
        "additionalProperties": False,
    }
    assert schema_for(Partial)["required"] == ["id"]
    assert schema_for(Partial)["properties"]["note"] == {"type": "string"}


def test_dataclass_schema_nested() -> None:
    assert schema_for(Person) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string", "default": "Paris"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["street"],
                "additionalProperties": False,
            },
            "colour": {"type": "string", "enum": ["red", "green"], "default": "red"},
        },
        "required": ["name", "address"],
        "additionalProperties": False,
    }


@dataclass
class Node:
    value: int
    children: list[Node]


class Custom:
    pass


@pytest.mark.parametrize(
    ("hint", "match"),
    [
        (Custom, "Custom"),
        (bytes, "bytes"),
        (dict[int, str], "keys must be str"),
        (list[Custom], "Custom"),
        (Node, "recursive"),
        (Literal[1.5, object()], "Literal"),
        (Callable[[int], int], "unsupported"),
    ],
)
def test_unsupported_hints_raise_type_error(hint: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        schema_for(hint)


def test_unsupported_field_names_the_field() -> None:
    @dataclass
    class Holder:
        blob: bytes

    with pytest.raises(TypeError, match=r"Holder\.blob"):
        schema_for(Holder)


def test_generated_schemas_are_valid_2020_12() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    patterned = Annotated[str, Param(pattern="a", max_length=8)]
    for hint in (Person, Point, Movie, int | None, tuple[int, str], set[str], patterned):
        jsonschema.Draft202012Validator.check_schema(schema_for(hint))


# --------------------------------------------------------------------------------------------------
# validate


def test_valid_instances() -> None:
    assert validate({"x": 1, "y": 2}, schema_for(Point)) == []
    assert validate(1.0, {"type": "integer"}) == []  # integer-valued floats are integers
    assert validate(3, {"type": "number"}) == []
    assert validate(None, schema_for(int | None)) == []
    assert validate("anything", {}) == []
    assert validate([1, 2], True) == []


@pytest.mark.parametrize(
    ("instance", "schema", "expected"),
    [
        ("3", {"type": "integer"}, "$: expected integer, got string"),
        (True, {"type": "integer"}, "$: expected integer, got boolean"),
        (False, {"type": "number"}, "$: expected number, got boolean"),
        (1, {"type": "boolean"}, "$: expected boolean, got integer"),
        (1.5, {"type": "integer"}, "$: expected integer, got number"),
        (float("nan"), {"type": "number"}, "$: expected number, got non-finite number"),
        (None, {"type": "string"}, "$: expected string, got null"),
        ([], {"type": "object"}, "$: expected object, got array"),
        ({}, {"type": "array"}, "$: expected array, got object"),
        (1, {"type": ["string", "null"]}, "$: expected string or null, got integer"),
        ("blue", {"type": "string", "enum": ["red", "green"]}, '$: expected one of "red", "green"'),
        (True, {"enum": [1]}, "$: expected one of 1"),
        (2, {"const": 1}, "$: expected 1"),
        (0, {"type": "integer", "minimum": 1}, "$: must be >= 1"),
        (9, {"type": "integer", "maximum": 5}, "$: must be <= 5"),
        ("", {"type": "string", "minLength": 1}, "$: must be at least 1 characters long"),
        ("abc", {"type": "string", "maxLength": 2}, "$: must be at most 2 characters long"),
        ("ABC", {"type": "string", "pattern": "^[a-z]+$"}, "$: must match the pattern '^[a-z]+$'"),
        ([1], {"type": "array", "minItems": 2}, "$: expected at least 2 items, got 1"),
        ([1, 2, 3], {"type": "array", "maxItems": 2}, "$: expected at most 2 items, got 3"),
        ([1, 1.0], {"type": "array", "uniqueItems": True}, "$[1]: duplicate item; items must be unique"),
        (1, False, "$: no value is allowed here"),
    ],
)
def test_single_errors(instance: Any, schema: Any, expected: str) -> None:
    assert validate(instance, schema) == [expected]


def test_enum_uses_json_equality() -> None:
    assert validate(1.0, {"enum": [1]}) == []
    assert validate(1, {"enum": [True]}) != []
    assert validate({"a": [1]}, {"const": {"a": [1.0]}}) == []


def test_unique_items_distinguishes_bool_from_int() -> None:
    assert validate([1, True, "1", None, [1], {"a": 1}], {"type": "array", "uniqueItems": True}) == []
    assert validate([{"a": 1}, {"a": 1}], {"type": "array", "uniqueItems": True}) == [
        "$[1]: duplicate item; items must be unique"
    ]


def test_object_errors_with_paths() -> None:
    schema = schema_for(Person)
    errors = validate({"address": {"street": 1, "zip": "x"}, "age": 3}, schema, root="arguments")
    assert errors == [
        "arguments.name: missing required property",
        "arguments.address.street: expected string, got integer",
        "arguments.address.zip: unknown property (allowed: street, city, tags)",
        "arguments.age: unknown property (allowed: name, address, colour)",
    ]


def test_array_item_paths() -> None:
    schema = schema_for(list[Point])
    assert validate([{"x": 1, "y": 2}, {"x": "1", "y": 2}], schema, root="arguments.points") == [
        "arguments.points[1].x: expected integer, got string"
    ]


def test_prefix_items() -> None:
    schema = schema_for(tuple[int, str])
    assert validate([1, "a"], schema) == []
    assert validate(["a", "a"], schema) == ["$[0]: expected integer, got string"]
    assert validate([1], schema) == ["$: expected at least 2 items, got 1"]


def test_additional_properties_schema() -> None:
    schema = schema_for(dict[str, int])
    assert validate({"a": 1, "b": "x"}, schema) == ["$.b: expected integer, got string"]


def test_odd_property_names_are_quoted_and_truncated() -> None:
    errors = validate({"a b": 1, "z" * 500: 1}, {"type": "object", "additionalProperties": False})
    assert errors[0] == '$["a b"]: unknown property (allowed: none)'
    assert len(errors[1]) < 120


def test_non_string_keys_are_rejected() -> None:
    assert validate({1: "a"}, {"type": "object"}) == ["$: object keys must be strings, got integer"]


def test_optional_reports_the_inner_error() -> None:
    schema = schema_for(Annotated[int, Param(minimum=1)] | None)
    assert validate(0, schema) == ["$: must be >= 1"]
    assert validate("x", schema) == ["$: expected integer or null, got string"]


def test_any_of_with_ambiguous_branches() -> None:
    schema = schema_for(Point | Movie)
    assert validate({"x": 1}, schema) == ["$: expected object or object, got object"]


def test_any_of_enum_description() -> None:
    schema = schema_for(Literal["a"] | int)
    assert validate(True, schema) == ['$: expected one of "a" or integer, got boolean']


def test_error_cap() -> None:
    errors = validate(["x"] * 1000, schema_for(list[int]), max_errors=10)
    assert len(errors) == 11
    assert errors[-1] == "$: more errors omitted"
    assert errors[0] == "$[0]: expected integer, got string"


def test_depth_cap() -> None:
    schema: dict[str, Any] = {"type": "array"}
    for _ in range(MAX_DEPTH + 5):
        schema = {"type": "array", "items": schema}
    instance: Any = []
    for _ in range(MAX_DEPTH + 5):
        instance = [instance]
    errors = validate(instance, schema)
    assert len(errors) == 1
    assert errors[0].endswith("value is nested too deeply")


def test_hostile_input_is_fast() -> None:
    started = time.perf_counter()
    validate(list(range(200_000)), schema_for(set[int]))
    validate([{"x": "no"}] * 100_000, schema_for(list[Point]))
    assert time.perf_counter() - started < 2


def test_messages_never_echo_values() -> None:
    secret = "eyJhbGciOi.secret.value"
    errors = validate({"name": secret, "n": secret}, {"type": "object", "properties": {"n": {"type": "integer"}}})
    assert errors == ["$.n: expected integer, got string"]
    assert not any(secret in e for e in validate(secret, {"type": "string", "enum": ["a"]}))


def test_agrees_with_jsonschema_on_samples() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    cases: list[tuple[Any, Any]] = [
        (Person, {"name": "a", "address": {"street": "s"}}),
        (Person, {"name": "a", "address": {"street": "s", "x": 1}}),
        (Person, {"name": "a", "address": {"street": "s"}, "colour": "blue"}),
        (list[int], [1, 2.0, True]),
        (set[int], [1, 1.0]),
        (tuple[int, str], [1, "a", 3]),
        (int | None, None),
        (Annotated[str, Param(pattern="^a", max_length=3)], "abcd"),
        (Annotated[int, Param(minimum=2)], 2),
        (dict[str, Level], {"a": 1, "b": 3}),
    ]
    for hint, instance in cases:
        schema = schema_for(hint)
        expected_valid = jsonschema.Draft202012Validator(schema).is_valid(instance)
        assert (validate(instance, schema) == []) == expected_valid, (hint, instance)


# --------------------------------------------------------------------------------------------------
# converter_for


def test_converters() -> None:
    assert converter_for(str) is None
    assert converter_for(list[str]) is None
    assert converter_for(int)(3.0) == 3  # type: ignore[misc]
    assert type(converter_for(int)(3.0)) is int  # type: ignore[misc]
    assert converter_for(Colour)("red") is Colour.RED  # type: ignore[misc]
    assert converter_for(Level)(2.0) is Level.HIGH  # type: ignore[misc]
    assert converter_for(list[int])([1.0, 2]) == [1, 2]  # type: ignore[misc]
    assert converter_for(tuple[int, ...])([1.0]) == (1,)  # type: ignore[misc]
    assert converter_for(tuple[int, str])([1.0, "a"]) == (1, "a")  # type: ignore[misc]
    assert converter_for(set[str])(["a", "b"]) == {"a", "b"}  # type: ignore[misc]
    assert converter_for(frozenset[int])([1.0]) == frozenset({1})  # type: ignore[misc]
    assert converter_for(dict[str, Colour])({"a": "green"}) == {"a": Colour.GREEN}  # type: ignore[misc]
    assert converter_for(Annotated[int, "x"])(1.0) == 1  # type: ignore[misc]
    assert converter_for(Literal[1, 2])(2.0) == 2  # type: ignore[misc]


def test_optional_and_union_converters() -> None:
    optional = converter_for(Colour | None)
    assert optional is not None
    assert optional(None) is None
    assert optional("red") is Colour.RED
    union = converter_for(int | str)
    assert union is not None
    assert union(2.0) == 2 and type(union(2.0)) is int
    assert union("2") == "2"
    assert converter_for(str | None) is None


def test_record_converters() -> None:
    person = converter_for(Person)
    assert person is not None
    value = person({"name": "n", "address": {"street": "s", "tags": ["t"]}, "colour": "green"})
    assert value == Person(name="n", address=Address(street="s", tags=["t"]), colour=Colour.GREEN)
    assert converter_for(Point) is not None  # ints inside
    assert converter_for(Point)({"x": 1.0, "y": 2}) == {"x": 1, "y": 2}  # type: ignore[misc]
    assert converter_for(Movie)({"title": "t"}) == {"title": "t"}  # type: ignore[misc]
