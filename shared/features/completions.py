"""Argument completion (``completion/complete``) for prompt arguments and resource-template variables.

A forker writes::

    completions = CompletionRegistry()

    @completions.prompt_argument("review", "language")
    def languages(value: str, context: dict[str, str]) -> list[str]:
        \"\"\"Languages starting with what the user typed.\"\"\"
        return [lang for lang in ("python", "typescript", "go") if lang.startswith(value)]

``context`` holds the arguments the user already filled in. Arguments without a completer complete to
nothing (an empty list), which the protocol allows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from shared.features.callables import run_awaitable

F = TypeVar("F", bound=Callable[..., Any])
MAX_VALUES = 100

Completer = Callable[[str, Mapping[str, str]], Iterable[str]]


class CompletionRegistry:
    def __init__(self) -> None:
        self._completers: dict[tuple[str, str, str], Completer] = {}

    def prompt_argument(self, prompt: str, argument: str) -> Callable[[F], F]:
        """Complete ``argument`` of the prompt named ``prompt``."""
        return self._register("ref/prompt", prompt, argument)

    def resource_argument(self, uri_template: str, variable: str) -> Callable[[F], F]:
        """Complete ``variable`` of the resource template ``uri_template``."""
        return self._register("ref/resource", uri_template, variable)

    def _register(self, kind: str, target: str, argument: str) -> Callable[[F], F]:
        def register(func: F) -> F:
            key = (kind, target, argument)
            if key in self._completers:
                raise ValueError(f"A completer for {argument!r} of {target!r} is already registered")
            self._completers[key] = func
            return func

        return register

    def __len__(self) -> int:
        return len(self._completers)

    def complete(self, kind: str, target: str, argument: str, value: str,
                 context: Mapping[str, str]) -> dict[str, Any]:
        """A ``CompleteResult`` ``completion`` object: at most 100 values, with total and hasMore."""
        completer = self._completers.get((kind, target, argument))
        values: list[str] = []
        if completer is not None:
            produced = completer(value, context)
            if inspect.isawaitable(produced):
                produced = run_awaitable(produced)
            values = [str(v) for v in produced]
        return {"values": values[:MAX_VALUES], "total": len(values), "hasMore": len(values) > MAX_VALUES}
