"""What resources, prompts and completions share: reading a decorated function's string parameters.

Tools have a full JSON-Schema pipeline (``shared.schema``); prompt arguments and URI-template variables
are always strings on the wire, so their functions take ``str`` parameters plus an optional
``ctx: ToolContext``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .tools import ToolContext, parse_docstring, run_awaitable


@dataclass(frozen=True)
class Param:
    name: str
    required: bool
    description: str | None = None


@dataclass(frozen=True)
class Signature:
    description: str
    params: tuple[Param, ...]
    context_params: tuple[str, ...]


def read_signature(func: Callable[..., Any], where: str, description: str | None) -> Signature:
    if not callable(func):
        raise TypeError(f"{where}: needs a function, got {type(func).__name__}")
    summary, arg_docs = parse_docstring(func.__doc__)
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise TypeError(f"{where}: cannot resolve its type annotations: {exc}") from None
    params: list[Param] = []
    context: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"{where}: parameter {param.name!r} must be a plain keyword parameter")
        hint = hints.get(param.name)
        if hint is ToolContext:
            context.append(param.name)
            continue
        if hint not in (str, str | None, typing.Optional[str]):  # noqa: UP045 - both spellings appear
            raise TypeError(f"{where}: parameter {param.name!r} must be annotated str (arguments are strings)")
        params.append(Param(param.name, param.default is param.empty, arg_docs.get(param.name)))
    return Signature(inspect.cleandoc(description) if description else summary, tuple(params), tuple(context))


def invoke(func: Callable[..., Any], signature: Signature, arguments: Mapping[str, str], ctx: ToolContext) -> Any:
    kwargs: dict[str, Any] = {p.name: arguments[p.name] for p in signature.params if p.name in arguments}
    kwargs.update((name, ctx) for name in signature.context_params)
    value = func(**kwargs)
    if inspect.isawaitable(value):
        value = run_awaitable(value)
    return value
