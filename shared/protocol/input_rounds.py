"""The server side of multi round-trip requests (MRTR): running a function that may ask for input.

``shared.mrtr`` is what tool, prompt and resource authors use to ask (:class:`InputRequired`); this
module turns that signal into an ``InputRequiredResult`` with a sealed ``requestState``, opens the
state and ``inputResponses`` on the client's retry, and degrades gracefully for legacy revisions that
cannot carry either. It knows nothing of HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from shared.features.context import Caller, ToolContext
from shared.features.mrtr import InputRequired, client_supports
from shared.protocol.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, MISSING_CLIENT_CAPABILITY, RpcError
from shared.protocol.request import Request
from shared.protocol.request_state import InvalidRequestState, RequestStateCodec, StaleRequestState

# The engine's logger name from before this module was split out: operators' filters keep working.
log = logging.getLogger("mcp.protocol")


def run_with_input(
    codec: RequestStateCodec, request: Request, binding: str, run: Callable[[ToolContext], dict[str, Any]]
) -> dict[str, Any]:
    """Run a tool, prompt or resource function that may raise InputRequired (MRTR).

    In 2026-07-28 the retry's inputResponses and verified requestState reach the function through
    its context. Legacy revisions cannot carry either over stateless JSON: a function that asks
    for input there is reported as needing a newer client. ``binding`` names what the state is
    issued for (``tools/call:<name>``...), so it cannot be replayed against another target.
    """
    subject = _subject(request.caller)
    responses: Mapping[str, Any] = {}
    state: Any = None
    if request.modern:
        responses = _input_responses(request.params)
        token = request.params.get("requestState")
        if token is not None:
            try:
                state = codec.open(token, binding=binding, subject=subject)
            except StaleRequestState:
                # Sealed by another instance's (or a rotated) key: start the round trip again.
                log.info("Stale requestState for %s; asking again", binding.split(":", 1)[0])
                responses = {}
            except InvalidRequestState as exc:
                raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
    try:
        return run(request.context(responses, state))
    except InputRequired as signal:
        if not request.modern:
            return _legacy_input_required(request, signal)
        capabilities = request.info.client_capabilities
        missing = [c for c in signal.required_capabilities() if not client_supports(capabilities, c)]
        if missing:
            raise RpcError(
                MISSING_CLIENT_CAPABILITY,
                "Missing required client capability: " + ", ".join(".".join(c) for c in missing),
                data={"requiredCapabilities": _capability_object(missing)},
                status=400,
            ) from None
        result: dict[str, Any] = {"resultType": "input_required"}
        if signal.requests:
            result["inputRequests"] = {key: r.to_json() for key, r in signal.requests.items()}
        # Always sealed, even without function state: it binds the round to this caller and request.
        result["requestState"] = codec.seal(signal.state, binding=binding, subject=subject)
        return result


def _legacy_input_required(request: Request, signal: InputRequired) -> dict[str, Any]:
    what = ", ".join(sorted({r.method for r in signal.requests.values()})) or "a retry"
    message = (f"This request needs input from the client ({what}), which protocol version "
               f"{request.info.protocol_version} cannot carry on this stateless server. "
               "Use a client that speaks MCP 2026-07-28.")
    if request.method == "tools/call":
        return {"content": [{"type": "text", "text": message}], "isError": True}
    raise RpcError(INVALID_REQUEST, message)


def _input_responses(params: Mapping[str, Any]) -> Mapping[str, Any]:
    if "inputResponses" not in params:
        return {}
    responses = params["inputResponses"]
    if not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values()):
        raise RpcError(INVALID_PARAMS, "Invalid params: inputResponses must map keys to result objects")
    return responses


def _subject(caller: Caller) -> str:
    """Who requestState is bound to: the caller's tenant and object ID (sub for callers without oid)."""
    claims = caller.claims
    return f"{claims.get('tid', '')}/{claims.get('oid') or claims.get('sub', '')}"


def _capability_object(paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """Capability paths such as ``("elicitation", "form")`` as the nested object clients declare."""
    required: dict[str, Any] = {}
    for path in paths:
        node = required
        for part in path:
            node = node.setdefault(part, {})
    return required
