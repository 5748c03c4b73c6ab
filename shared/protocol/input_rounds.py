"""The server side of multi round-trip requests (MRTR): running a function that may ask for input.

``shared.mrtr`` is what tool, prompt and resource authors use to ask (:class:`InputRequired`); this
module turns that signal into an ``InputRequiredResult`` with a sealed ``requestState``, opens the
state and ``inputResponses`` on the client's retry, and degrades gracefully for legacy revisions that
cannot carry either. It knows nothing of HTTP.

What reaches the function (issue 10). Every ``InputRequiredResult`` carries a sealed ``requestState``
(even when the function saved no state of its own), bound to the caller, the target, a digest of the
request's arguments and the keys of the input requests it issued (``shared.protocol.request_state``). So
``ctx.input_responses`` only ever holds answers to questions this server asked this caller in the previous
round of this very request:

* ``inputResponses`` without a ``requestState`` are dropped, never an error: the function runs as on a
  first call and asks again. Answers nobody asked for cannot stand in for a confirmation. (The
  conformance scenario ``input-required-result-ignore-extra-params`` sends a first call with answers and
  no state and expects them to be used; this server deliberately does not.)
* answers under keys the round did not issue are dropped (the spec's "ignore what you do not recognise");
* a state issued for other arguments is refused like one issued for another tool or user (-32602): a
  confirmation of "transfer 10" does not confirm a transfer of 10,000;
* a state this process cannot verify because another key sealed it (another instance, a rotated key) is
  stale: its answers are dropped and the round trip starts again.

Malformed ``inputResponses`` are still a protocol error (-32602), with or without a state.
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
    codec: RequestStateCodec, request: Request, binding: str, run: Callable[[ToolContext], dict[str, Any]],
    arguments: Any = None,
) -> dict[str, Any]:
    """Run a tool, prompt or resource function that may raise InputRequired (MRTR).

    In 2026-07-28 the retry's verified requestState, and the inputResponses its round asked for, reach
    the function through its context (see the module docstring for what is dropped). Legacy revisions
    cannot carry either over stateless JSON: a function that asks for input there is reported as needing
    a newer client. ``binding`` names what the state is issued for (``tools/call:<name>``...) and
    ``arguments`` the request's arguments (None and absent mean ``{}``), so it cannot be replayed against
    another target or with other arguments.
    """
    subject = _subject(request.caller)
    arguments = {} if arguments is None else arguments
    responses: Mapping[str, Any] = {}
    state: Any = None
    if request.modern:
        offered = _input_responses(request.params)
        token = request.params.get("requestState")
        if token is not None:
            try:
                opened = codec.open(token, binding=binding, subject=subject, arguments=arguments)
            except StaleRequestState:
                # Sealed by another instance's (or a rotated) key, or by an earlier version: start again.
                log.info("Stale requestState for %s; asking again", binding.split(":", 1)[0])
            except InvalidRequestState as exc:
                raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None
            except ValueError:
                raise _unbindable() from None
            else:
                state = opened.data
                # Only answers to what that round asked; anything else is ignored, not an error.
                responses = {key: value for key, value in offered.items() if key in opened.keys}
        elif offered:
            log.info("inputResponses without requestState for %s; ignored", binding.split(":", 1)[0])
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
        # Always sealed, even without function state: it binds the round to this caller, request and
        # arguments, and names the questions asked, so only their answers count on the retry.
        try:
            result["requestState"] = codec.seal(signal.state, binding=binding, subject=subject,
                                                arguments=arguments, keys=signal.requests)
        except ValueError:
            raise _unbindable() from None
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


def _unbindable() -> RpcError:
    # Arguments without a canonical JSON form (nested beyond the encoder's depth) cannot be bound.
    return RpcError(INVALID_PARAMS, "Invalid params: the arguments cannot be bound to a requestState")


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
