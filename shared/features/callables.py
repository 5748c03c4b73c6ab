"""What tools, resources, prompts and completions share: reading and running a decorated function.

Tools have a full JSON-Schema pipeline (``shared.features.schema``); prompt arguments and URI-template variables
are always strings on the wire, so their functions take ``str`` parameters plus an optional
``ctx: ToolContext``. All of them take descriptions from docstrings (:func:`parse_docstring`), may be
``async`` (:func:`run_awaitable`) and, for tools and prompts, share the name rule (:data:`NAME_PATTERN`).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.features.context import ToolContext

# Tool and prompt names: 1-128 characters from A-Z a-z 0-9 _ . - (what MCP clients accept everywhere).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
NAME_RULE = "use 1-128 characters from A-Z a-z 0-9 _ . -"
_SECTION = re.compile(r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):")
_ARG_LINE = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")


@dataclass(frozen=True)
class StringParam:
    """One ``str`` parameter of a prompt or resource function."""

    name: str
    required: bool
    description: str | None = None


@dataclass(frozen=True)
class Signature:
    description: str
    params: tuple[StringParam, ...]
    context_params: tuple[str, ...]


def read_signature(func: Callable[..., Any], where: str, description: str | None) -> Signature:
    if not callable(func):
        raise TypeError(f"{where}: needs a function, got {type(func).__name__}")
    summary, arg_docs = parse_docstring(func.__doc__)
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise TypeError(f"{where}: cannot resolve its type annotations: {exc}") from None
    params: list[StringParam] = []
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
        params.append(StringParam(param.name, param.default is param.empty, arg_docs.get(param.name)))
    return Signature(inspect.cleandoc(description) if description else summary, tuple(params), tuple(context))


def invoke(func: Callable[..., Any], signature: Signature, arguments: Mapping[str, str], ctx: ToolContext) -> Any:
    kwargs: dict[str, Any] = {p.name: arguments[p.name] for p in signature.params if p.name in arguments}
    kwargs.update((name, ctx) for name in signature.context_params)
    value = func(**kwargs)
    if inspect.isawaitable(value):
        value = run_awaitable(value)
    return value


def run_awaitable(awaitable: Any) -> Any:
    """Run what an ``async def`` tool, prompt, resource or completer returned to completion, synchronously."""
    # Imported here: asyncio costs ~15 ms at start-up and only async functions need it.
    import asyncio
    import concurrent.futures
    import contextvars

    async def run() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # A loop already runs in this thread (an async host) and cannot be re-entered: give the coroutine its
    # own loop in a worker thread, keeping context variables (logging/tracing correlation) intact.
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp-tool") as pool:
        return pool.submit(context.run, asyncio.run, run()).result()


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into the description (everything before "Args:") and Google-style parameter docs."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    for index, line in enumerate(lines):
        if _SECTION.fullmatch(line.strip()) and not line.startswith((" ", "\t")):
            return "\n".join(lines[:index]).strip(), _parse_args(lines[index + 1 :])
    return "\n".join(lines).strip(), {}


def _parse_args(lines: list[str]) -> dict[str, str]:
    docs: dict[str, list[str]] = {}
    entry_indent: int | None = None
    current: list[str] | None = None
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break  # The next section ("Returns:", ...) starts.
        if entry_indent is None:
            entry_indent = indent
        match = _ARG_LINE.fullmatch(line.strip())
        if indent <= entry_indent and match:
            current = docs.setdefault(match.group(1), [])
            if match.group(2):
                current.append(match.group(2).strip())
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(parts) for name, parts in docs.items() if parts}
