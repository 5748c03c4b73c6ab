"""The resource registry: plain functions become MCP resources and resource templates.

A forker writes::

    resources = ResourceRegistry()

    @resources.resource("docs://readme", mime_type="text/markdown")
    def readme() -> str:
        \"\"\"The project's README.\"\"\"
        return Path("README.md").read_text()

    @resources.template("users://{user_id}/profile", mime_type="application/json")
    def profile(user_id: str, ctx: ToolContext) -> str:
        \"\"\"A user's profile.\"\"\"
        ...

A function returns ``str`` (text), ``bytes`` (a blob), a :class:`ResourceContents` or a list of them.
Template variables (RFC 6570 level 1, ``{name}``) arrive as ``str`` parameters. Add ``ctx: ToolContext``
to see the caller; raise ``InputRequired`` (``shared.mrtr``) to ask the client for input.

A variable is one path segment, percent-decoded once, and never a way out of it: a value that decodes to
a ``/`` or ``\\``, a control character, or a dot segment (``.`` or ``..``, however it was encoded:
``%2e%2e``, ``.%2E``) matches no template, so the read is answered "Resource not found" like any other
unknown URI (-32602, or -32002 before 2026-07-28). Dot segments are refused for every template, not only
those that look like paths: the registry cannot know that a function will not join the value into a file
path or a downstream URL, where ``..`` climbs out of where it was meant to stay. Names that merely contain
dots (``.hidden``, ``a..b``, ``...``) are not dot segments and resolve.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from shared.features.callables import Signature, invoke, read_signature
from shared.features.context import ToolContext

__all__ = [
    "MAX_URI_LENGTH",
    "Resource",
    "ResourceContents",
    "ResourceNotFound",
    "ResourceRegistry",
    "ToolContext",
]

F = TypeVar("F", bound=Callable[..., Any])

_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\}")


class ResourceNotFound(LookupError):
    """No resource or template matches the URI (the engine answers -32602, or -32002 before 2026-07-28)."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"Resource not found: {uri[:200]}")
        self.uri = uri


@dataclass(frozen=True)
class ResourceContents:
    """One item of a ``resources/read`` result; give ``text`` or ``blob``. ``uri`` defaults to the read URI."""

    text: str | None = None
    blob: bytes | None = None
    mime_type: str | None = None
    uri: str | None = None

    def to_json(self, uri: str, default_mime: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {"uri": self.uri or uri}
        mime = self.mime_type or default_mime
        if mime:
            item["mimeType"] = mime
        if self.blob is not None:
            item["blob"] = base64.b64encode(self.blob).decode("ascii")
        else:
            item["text"] = self.text or ""
        return item


@dataclass(frozen=True)
class Resource:
    uri: str
    func: Callable[..., Any]
    signature: Signature
    definition: dict[str, Any]
    mime_type: str | None = None
    # Set for templates: the compiled matcher and the variable names in order.
    pattern: re.Pattern[str] | None = None
    variables: tuple[str, ...] = field(default=())


MAX_URI_LENGTH = 2048
_UNSAFE_VALUE = re.compile(r"[/\\\x00-\x1f\x7f]")
# RFC 3986 section 3.3 dot segments, compared after percent-decoding.
_DOT_SEGMENTS = frozenset({".", ".."})


def _template_pattern(uri_template: str) -> re.Pattern[str]:
    """A regex for an RFC 6570 level-1 template that matches in linear time.

    A variable stops at the first character of the literal that follows it, so there is
    never more than one way to split a URI: no backtracking for a hostile URI to exploit.
    """
    parts = _VARIABLE.split(uri_template)
    pieces = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            pieces.append(re.escape(part))
            continue
        following = parts[index + 1][:1] if index + 1 < len(parts) else ""
        excluded = "/?#" + (re.escape(following) if following else "")
        pieces.append(f"(?P<{part}>[^{excluded}]+)")
    return re.compile("".join(pieces))


class ResourceRegistry:
    """Ordered static resources and URI templates, filled with decorators."""

    def __init__(self) -> None:
        self._static: dict[str, Resource] = {}
        self._templates: dict[str, Resource] = {}

    def resource(
        self, uri: str, *, name: str | None = None, title: str | None = None, description: str | None = None,
        mime_type: str | None = None, size: int | None = None,
    ) -> Callable[[F], F]:
        """Register a function that returns the content of the resource at ``uri``."""
        if not isinstance(uri, str) or not uri or _VARIABLE.search(uri):
            raise ValueError(f"Invalid resource URI {uri!r} (use @template for URIs with {{variables}})")

        def register(func: F) -> F:
            where = f"Resource {uri!r}"
            sig = read_signature(func, where, description)
            if sig.params:
                raise TypeError(f"{where}: a static resource takes no parameters besides ctx")
            definition = _definition(func, "uri", uri, name, title, sig, mime_type, where)
            if size is not None:
                definition["size"] = size
            if uri in self._static:
                raise ValueError(f"A resource with URI {uri!r} is already registered")
            self._static[uri] = Resource(uri, func, sig, definition, mime_type)
            return func

        return register

    def template(
        self, uri_template: str, *, name: str | None = None, title: str | None = None,
        description: str | None = None, mime_type: str | None = None,
    ) -> Callable[[F], F]:
        """Register a function serving every URI that matches ``uri_template`` (``{var}`` segments)."""
        variables = tuple(_VARIABLE.findall(uri_template or ""))
        if not variables:
            raise ValueError(f"Invalid URI template {uri_template!r}: it has no {{variable}}")
        if len(set(variables)) != len(variables):
            raise ValueError(f"URI template {uri_template!r} repeats a variable")
        pattern = _template_pattern(uri_template)

        def register(func: F) -> F:
            where = f"Resource template {uri_template!r}"
            sig = read_signature(func, where, description)
            names = {p.name for p in sig.params}
            if names != set(variables):
                raise TypeError(f"{where}: parameters must be exactly the template variables {list(variables)}")
            definition = _definition(func, "uriTemplate", uri_template, name, title, sig, mime_type, where)
            if uri_template in self._templates:
                raise ValueError(f"A template {uri_template!r} is already registered")
            self._templates[uri_template] = Resource(uri_template, func, sig, definition, mime_type, pattern,
                                                     variables)
            return func

        return register

    def definitions(self) -> list[dict[str, Any]]:
        return [r.definition for r in self._static.values()]

    def template_definitions(self) -> list[dict[str, Any]]:
        return [r.definition for r in self._templates.values()]

    def get_template(self, uri_template: str) -> Resource | None:
        return self._templates.get(uri_template)

    def __len__(self) -> int:
        return len(self._static) + len(self._templates)

    def __iter__(self) -> Iterator[Resource]:
        yield from self._static.values()
        yield from self._templates.values()

    def resolve(self, uri: str) -> tuple[Resource, dict[str, str]]:
        """The resource serving ``uri`` and its template variables; raise ResourceNotFound."""
        static = self._static.get(uri)
        if static is not None:
            return static, {}
        if len(uri) > MAX_URI_LENGTH:
            raise ResourceNotFound(uri[:MAX_URI_LENGTH])
        for template in self._templates.values():
            assert template.pattern is not None
            match = template.pattern.fullmatch(uri)
            if match:
                variables = {k: unquote(v) for k, v in match.groupdict().items()}
                # Decoding must not reintroduce what the match excluded: a variable is one path
                # segment, never "../..", a backslash path, a control character or a dot segment.
                if any(v in _DOT_SEGMENTS or _UNSAFE_VALUE.search(v) for v in variables.values()):
                    raise ResourceNotFound(uri)
                return template, variables
        raise ResourceNotFound(uri)

    def read(self, uri: str, ctx: ToolContext) -> dict[str, Any]:
        """Run the resource function and shape a ``ReadResourceResult`` (``{"contents": [...]}``)."""
        resource, variables = self.resolve(uri)
        value = invoke(resource.func, resource.signature, variables, ctx)
        items = value if isinstance(value, list) else [value]
        contents = []
        for item in items:
            if isinstance(item, str):
                item = ResourceContents(text=item)
            elif isinstance(item, (bytes, bytearray)):
                item = ResourceContents(blob=bytes(item))
            elif isinstance(item, Mapping):
                contents.append(dict(item))
                continue
            if not isinstance(item, ResourceContents):
                raise TypeError(f"Resource {uri!r} returned {type(item).__name__}; return str, bytes or "
                                "ResourceContents")
            contents.append(item.to_json(uri, resource.mime_type))
        return {"contents": contents}


def _definition(
    func: Callable[..., Any], key: str, uri: str, name: str | None, title: str | None, sig: Signature,
    mime_type: str | None, where: str,
) -> dict[str, Any]:
    name = name if name is not None else getattr(func, "__name__", "")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"{where}: invalid name {name!r}")
    definition: dict[str, Any] = {key: uri, "name": name}
    if title:
        definition["title"] = title
    if sig.description:
        definition["description"] = sig.description
    if mime_type:
        definition["mimeType"] = mime_type
    return definition
