"""Multi round-trip requests (MCP 2026-07-28, ``basic/patterns/mrtr``): asking the client for input.

A stateless server cannot send the client a request and wait for the answer. Instead a tool (or a
prompt, or a resource) raises :class:`InputRequired` naming what it needs; the engine answers with an
``InputRequiredResult`` and the client retries the same request carrying ``inputResponses`` (and the
``requestState`` the engine issued). On the retry the function runs again from the top and finds the
answers in ``ctx.input_responses`` and its own saved state in ``ctx.state``::

    @tools.tool
    def greet(ctx: ToolContext) -> str:
        \"\"\"Greet the user by name.\"\"\"
        answer = ctx.input_responses.get("user_name")
        if not accepted(answer):
            raise InputRequired({"user_name": elicit_form("What is your name?", {
                "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})})
        return f"Hello, {answer['content']['name']}!"

This module knows nothing about JSON-RPC or HTTP; it only describes the requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "InputRequest",
    "InputRequired",
    "accepted",
    "client_supports",
    "elicit_form",
    "elicit_url",
    "list_roots",
    "sample",
]


@dataclass(frozen=True)
class InputRequest:
    """One server-to-client request inside ``inputRequests``.

    ``capability`` is the client capability it needs, as a path: ``("elicitation", "form")``,
    ``("elicitation", "url")``, ``("sampling",)`` or ``("roots",)``.
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    capability: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": dict(self.params)}


class InputRequired(Exception):
    """Raise from a tool, prompt or resource function to ask the client for input and a retry.

    ``requests`` maps keys of your choosing to :class:`InputRequest` objects; the answers come back in
    ``ctx.input_responses`` under the same keys. ``state`` (any JSON value) is sealed into the
    integrity-protected ``requestState`` and handed back as ``ctx.state`` on the retry: the client can
    read it (it is signed, not encrypted), so never put secrets or tokens in it.
    At least one of the two must be given.
    """

    def __init__(self, requests: Mapping[str, InputRequest] | None = None, *, state: Any = None) -> None:
        self.requests = dict(requests or {})
        self.state = state
        if not self.requests and state is None:
            raise ValueError("InputRequired needs input requests, state, or both")
        for key, request in self.requests.items():
            if not isinstance(key, str) or not key:
                raise ValueError("inputRequests keys must be non-empty strings")
            if not isinstance(request, InputRequest):
                raise TypeError(f"inputRequests[{key!r}] must be an InputRequest (use elicit_form, sample, ...)")
        super().__init__("The client must provide more input: " + ", ".join(self.requests) if self.requests
                         else "The client must retry with the request state")

    def required_capabilities(self) -> list[tuple[str, ...]]:
        return [r.capability for r in self.requests.values() if r.capability]


def elicit_form(message: str, requested_schema: Mapping[str, Any]) -> InputRequest:
    """Ask the user to fill in a form (a flat JSON Schema object of primitive properties)."""
    return InputRequest(
        "elicitation/create",
        {"mode": "form", "message": message, "requestedSchema": dict(requested_schema)},
        ("elicitation", "form"),
    )


def elicit_url(message: str, url: str, elicitation_id: str | None = None) -> InputRequest:
    """Ask the user to open ``url`` (sign-in to a third party, consent, payment...) outside the client."""
    return InputRequest(
        "elicitation/create",
        {"mode": "url", "message": message, "url": url, "elicitationId": elicitation_id or str(uuid.uuid4())},
        ("elicitation", "url"),
    )


def sample(
    messages: str | Iterable[Mapping[str, Any]],
    *,
    max_tokens: int,
    system_prompt: str | None = None,
    **extra: Any,
) -> InputRequest:
    """Ask the client's model for a completion; a plain string becomes one user text message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
    params: dict[str, Any] = {"messages": [dict(m) for m in messages], "maxTokens": max_tokens}
    if system_prompt is not None:
        params["systemPrompt"] = system_prompt
    params.update(extra)
    return InputRequest("sampling/createMessage", params, ("sampling",))


def list_roots() -> InputRequest:
    """Ask the client for its roots (the folders or files the user has shared)."""
    return InputRequest("roots/list", {}, ("roots",))


def client_supports(capabilities: Mapping[str, Any], capability: tuple[str, ...]) -> bool:
    """Whether the client's declared capabilities cover ``capability``.

    An empty ``elicitation`` object means form mode only (the 2026-07-28 backwards-compatibility rule).
    """
    if not capability:
        return True
    top = capabilities.get(capability[0])
    if not isinstance(top, Mapping):
        return False
    if capability[0] == "elicitation" and len(capability) > 1:
        if not top:
            return capability[1] == "form"
        return isinstance(top.get(capability[1]), Mapping)
    return True


def accepted(response: Any) -> bool:
    """True when an elicitation answer is an accepted form (``action == "accept"`` with ``content``)."""
    return (
        isinstance(response, Mapping)
        and response.get("action") == "accept"
        and isinstance(response.get("content"), Mapping)
    )
