"""The prompt registry: plain functions become MCP prompts (``prompts/list``, ``prompts/get``).

A forker writes::

    prompts = PromptRegistry()

    @prompts.prompt(title="Review code")
    def review(code: str, language: str = "python") -> str:
        \"\"\"Ask for a code review.

        Args:
            code: The code to review.
            language: Its programming language.
        \"\"\"
        return f"Please review this {language} code:\\n{code}"

Arguments are ``str`` parameters (required unless they have a default; described by the docstring's
``Args:`` section). A function returns a ``str`` (one user text message), a :class:`PromptMessage`, a
list of messages (``PromptMessage`` or MCP ``PromptMessage`` dicts), or a :class:`PromptResult`.
Add ``ctx: ToolContext`` to see the caller; raise ``InputRequired`` (``shared.mrtr``) to ask for input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from shared.features.callables import NAME_PATTERN, NAME_RULE, Signature, invoke, read_signature
from shared.features.context import ToolContext

__all__ = [
    "Prompt",
    "PromptArgumentError",
    "PromptMessage",
    "PromptRegistry",
    "PromptResult",
    "ToolContext",
    "UnknownPromptError",
]

F = TypeVar("F", bound=Callable[..., Any])


class UnknownPromptError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown prompt: {name[:128]}")
        self.name = name


class PromptArgumentError(ValueError):
    """Missing required or non-string arguments (the engine answers -32602)."""


@dataclass(frozen=True)
class PromptMessage:
    """One message; ``content`` is an MCP content block, or a str for a text block."""

    content: str | Mapping[str, Any]
    role: str = "user"

    def to_json(self) -> dict[str, Any]:
        content = {"type": "text", "text": self.content} if isinstance(self.content, str) else dict(self.content)
        return {"role": self.role, "content": content}


@dataclass(frozen=True)
class PromptResult:
    messages: list[PromptMessage | Mapping[str, Any]]
    description: str | None = None


@dataclass(frozen=True)
class Prompt:
    name: str
    func: Callable[..., Any]
    signature: Signature
    definition: dict[str, Any]


class PromptRegistry:
    def __init__(self) -> None:
        self._prompts: dict[str, Prompt] = {}

    @overload
    def prompt(self, func: F, /) -> F: ...

    @overload
    def prompt(
        self, func: None = None, /, *, name: str | None = None, title: str | None = None,
        description: str | None = None,
    ) -> Callable[[F], F]: ...

    def prompt(
        self, func: F | None = None, /, *, name: str | None = None, title: str | None = None,
        description: str | None = None,
    ) -> F | Callable[[F], F]:
        """Register a prompt; use as ``@prompts.prompt`` or ``@prompts.prompt(title=...)``.

        The function is returned unchanged, so it stays a plain, unit-testable function.
        """

        def register(f: F) -> F:
            prompt_name = name if name is not None else getattr(f, "__name__", "")
            if not isinstance(prompt_name, str) or not NAME_PATTERN.fullmatch(prompt_name):
                raise ValueError(f"Invalid prompt name {prompt_name!r}: {NAME_RULE}")
            where = f"Prompt {prompt_name!r}"
            sig = read_signature(f, where, description)
            definition: dict[str, Any] = {"name": prompt_name}
            if title:
                definition["title"] = title
            if sig.description:
                definition["description"] = sig.description
            if sig.params:
                definition["arguments"] = [
                    {"name": p.name, **({"description": p.description} if p.description else {}),
                     "required": p.required}
                    for p in sig.params
                ]
            if prompt_name in self._prompts:
                raise ValueError(f"A prompt named {prompt_name!r} is already registered")
            self._prompts[prompt_name] = Prompt(prompt_name, f, sig, definition)
            return f

        return register if func is None else register(func)

    def definitions(self) -> list[dict[str, Any]]:
        return [p.definition for p in self._prompts.values()]

    def get(self, name: str) -> Prompt | None:
        return self._prompts.get(name)

    def __len__(self) -> int:
        return len(self._prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self._prompts.values())

    def render(self, name: str, arguments: Any, ctx: ToolContext) -> dict[str, Any]:
        """Render a prompt as a ``GetPromptResult``; raise UnknownPromptError or PromptArgumentError."""
        prompt = self._prompts.get(name)
        if prompt is None:
            raise UnknownPromptError(name)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping) or not all(isinstance(v, str) for v in arguments.values()):
            raise PromptArgumentError("arguments must be an object of strings")
        missing = [p.name for p in prompt.signature.params if p.required and p.name not in arguments]
        if missing:
            raise PromptArgumentError(f"missing required argument(s) for prompt '{name}': {', '.join(missing)}")
        value = invoke(prompt.func, prompt.signature, arguments, ctx)
        description = prompt.definition.get("description")
        if isinstance(value, PromptResult):
            description = value.description or description
            value = value.messages
        if isinstance(value, (str, PromptMessage)):
            value = [value]
        messages = []
        for item in value:
            if isinstance(item, str):
                item = PromptMessage(item)
            messages.append(item.to_json() if isinstance(item, PromptMessage) else dict(item))
        result: dict[str, Any] = {"messages": messages}
        if description:
            result["description"] = description
        return result
