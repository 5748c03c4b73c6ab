"""The conformance fixture: the product's building blocks plus the tools, resources and prompts the
official ``@modelcontextprotocol/conformance`` server scenarios call by name.

Names and payloads follow the suite's reference server (``examples/servers/typescript/everything-server.ts``
in the conformance repository). ``app`` is a ``func.FunctionApp`` wired exactly like ``function_app.py``,
so the loopback harness (or ``func start``) serves it the way the Functions host would; auth stays on.
Everything here is test-only: nothing of it ships in the product.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import azure.functions as func

from shared.features.completions import CompletionRegistry
from shared.features.mrtr import InputRequest, InputRequired, accepted, elicit_form, list_roots, sample
from shared.features.prompts import PromptMessage, PromptRegistry
from shared.features.resources import ResourceContents, ResourceRegistry
from shared.features.tools import Param, ToolContext, ToolError, ToolRegistry, ToolResult
from shared.http.functions import serve
from shared.http.pipeline import McpServer

TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# SEP-1613 / SEP-2106: a raw 2020-12 schema whose keywords tools/list must preserve.
JSON_SCHEMA_2020_12_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

tools = ToolRegistry()
resources = ResourceRegistry()
prompts = PromptRegistry()
completions = CompletionRegistry()


def _text(text: str) -> ToolResult:
    return ToolResult(content=[{"type": "text", "text": text}])


def _form(message: str, field: str, kind: str = "string") -> InputRequest:
    return elicit_form(message, {"type": "object", "properties": {field: {"type": kind}}, "required": [field]})


def _field(response: Any, name: str) -> str:
    value = response.get("content", {}).get(name) if accepted(response) else None
    return value if isinstance(value, str) else "unknown"


# ---- tools: content types --------------------------------------------------------------------------


@tools.tool
def test_simple_text() -> ToolResult:
    """Tests simple text content response"""
    return _text("This is a simple text response for testing.")


@tools.tool
def test_image_content() -> ToolResult:
    """Tests image content response"""
    return ToolResult(content=[{"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"}])


@tools.tool
def test_audio_content() -> ToolResult:
    """Tests audio content response"""
    return ToolResult(content=[{"type": "audio", "data": TEST_AUDIO_BASE64, "mimeType": "audio/wav"}])


@tools.tool
def test_embedded_resource() -> ToolResult:
    """Tests embedded resource content response"""
    return ToolResult(content=[{"type": "resource", "resource": {
        "uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content.",
    }}])


@tools.tool
def test_multiple_content_types() -> ToolResult:
    """Tests response with multiple content types (text, image, resource)"""
    return ToolResult(content=[
        {"type": "text", "text": "Multiple content types test:"},
        {"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                                          "text": json.dumps({"test": "data", "value": 123})}},
    ])


@tools.tool
def test_error_handling() -> ToolResult:
    """Tests error response handling"""
    raise ToolError("This tool intentionally returns an error for testing")


@tools.tool
def test_tool_with_logging() -> ToolResult:
    """Tests tool that emits log messages during execution"""
    # A JSON response has no room for notifications/message: the logs go to the server log only.
    return _text("Tool with logging executed successfully")


@tools.tool
def test_tool_with_progress() -> ToolResult:
    """Tests tool that reports progress notifications"""
    # Progress notifications need a stream; this stateless JSON server sends none.
    return _text("0")


@tools.tool
def json_schema_2020_12_tool(name: str | None = None, address: dict[str, str] | None = None) -> ToolResult:
    """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)"""
    args = {k: v for k, v in (("name", name), ("address", address)) if v is not None}
    return _text(f"JSON Schema 2020-12 tool called with: {json.dumps(args)}")


# The generated schema validates calls; the listed one is the suite's raw 2020-12 document.
_schema_tool = tools.get("json_schema_2020_12_tool")
assert _schema_tool is not None
_schema_tool.definition["inputSchema"] = JSON_SCHEMA_2020_12_INPUT_SCHEMA


@tools.tool
def test_header_param(region: Annotated[str, Param(header="Region")], query: str = "") -> ToolResult:
    """Runs a query in a region; the region is mirrored into the Mcp-Param-Region header (SEP-2243)

    Args:
        region: The region to run the query in
        query: The query
    """
    return _text(f"region={region} query={query}")


# ---- tools: asking the client (2026-07-28 multi round-trip requests) ----------------------------------


@tools.tool
def test_sampling(prompt: str, ctx: ToolContext) -> ToolResult:
    """Tests server-initiated sampling (LLM completion request)

    Args:
        prompt: The prompt to send to the LLM
    """
    answer = ctx.input_responses.get("sampling")
    if answer is None:
        raise InputRequired({"sampling": sample(prompt, max_tokens=100)})
    return _text(f"LLM response: {answer.get('content', {}).get('text', 'No response')}")


@tools.tool
def test_elicitation(message: str, ctx: ToolContext) -> ToolResult:
    """Tests server-initiated elicitation (user input request)

    Args:
        message: The message to show the user
    """
    answer = ctx.input_responses.get("elicitation")
    if answer is None:
        raise InputRequired({"elicitation": elicit_form(message, {
            "type": "object", "properties": {"response": {"type": "string", "description": "User's response"}},
            "required": ["response"]})})
    return _text(f"User response: action={answer.get('action')}, content={json.dumps(answer.get('content') or {})}")


@tools.tool
def test_missing_capability(ctx: ToolContext) -> ToolResult:
    """Test tool requiring sampling"""
    if "sample" not in ctx.input_responses:
        raise InputRequired({"sample": sample("Sample request", max_tokens=50)})
    return _text("Success")


@tools.tool
def test_input_required_result_elicitation(ctx: ToolContext) -> ToolResult:
    """MRTR: returns InputRequiredResult with elicitation request"""
    answer = ctx.input_responses.get("user_name")
    if not accepted(answer):
        raise InputRequired({"user_name": _form("What is your name?", "name")})
    return _text(f"Hello, {_field(answer, 'name')}!")


@tools.tool
def test_input_required_result_sampling(ctx: ToolContext) -> ToolResult:
    """MRTR: returns InputRequiredResult with sampling request"""
    answer = ctx.input_responses.get("capital_question")
    if answer is None:
        raise InputRequired({"capital_question": sample("What is the capital of France?", max_tokens=100)})
    return _text(f"LLM said: {answer.get('content', {}).get('text', '')}")


@tools.tool
def test_input_required_result_list_roots(ctx: ToolContext) -> ToolResult:
    """MRTR: returns InputRequiredResult with roots/list request"""
    answer = ctx.input_responses.get("client_roots")
    if answer is None or not isinstance(answer.get("roots"), list):
        raise InputRequired({"client_roots": list_roots()})
    uris = [r.get("uri", "") for r in answer["roots"] if isinstance(r, dict)]
    return _text(f"Roots: {', '.join(uris) or 'none'}")


@tools.tool
def test_input_required_result_request_state(ctx: ToolContext) -> ToolResult:
    """MRTR: returns InputRequiredResult with requestState"""
    if ctx.state == {"kind": "request-state"} and "confirm" in ctx.input_responses:
        return _text("state-ok: request state validated")
    raise InputRequired({"confirm": _form("Please confirm", "ok", "boolean")}, state={"kind": "request-state"})


@tools.tool
def test_input_required_result_multiple_inputs(ctx: ToolContext) -> ToolResult:
    """MRTR: returns InputRequiredResult with multiple input requests"""
    r = ctx.input_responses
    if ctx.state == {"kind": "multiple-inputs"} and {"user_name", "greeting", "client_roots"} <= set(r):
        greeting = r["greeting"].get("content", {}).get("text", "Hello there!")
        roots = r["client_roots"].get("roots") or []
        return _text(f"Name: {_field(r['user_name'], 'name')}; Greeting: {greeting}; Roots: {len(roots)}")
    raise InputRequired({
        "user_name": _form("What is your name?", "name"),
        "greeting": sample("Generate a greeting", max_tokens=50),
        "client_roots": list_roots(),
    }, state={"kind": "multiple-inputs"})


@tools.tool
def test_input_required_result_multi_round(ctx: ToolContext) -> ToolResult:
    """MRTR: multi-round InputRequiredResult workflow"""
    state = ctx.state if isinstance(ctx.state, dict) else {}
    if state.get("round") == 1 and "step1" in ctx.input_responses:
        raise InputRequired({"step2": _form("Step 2: What is your favorite color?", "color")},
                            state={"round": 2, "name": _field(ctx.input_responses["step1"], "name")})
    if state.get("round") == 2 and "step2" in ctx.input_responses:
        color = _field(ctx.input_responses["step2"], "color")
        return _text(f"Multi-round complete for {state.get('name', 'friend')} who likes {color}")
    raise InputRequired({"step1": _form("Step 1: What is your name?", "name")}, state={"round": 1})


@tools.tool
def test_input_required_result_tampered_state(ctx: ToolContext) -> ToolResult:
    """MRTR: HMAC-signed requestState integrity test"""
    # The engine verifies requestState before this runs: tampered state never gets here.
    if ctx.state == {"kind": "tamper-test"} and "confirm" in ctx.input_responses:
        return _text("integrity-ok: state verified")
    raise InputRequired({"confirm": _form("Please confirm", "ok", "boolean")}, state={"kind": "tamper-test"})


@tools.tool
def test_input_required_result_capabilities(ctx: ToolContext) -> ToolResult:
    """MRTR: respects client capabilities in inputRequests"""
    if ctx.input_responses:
        return _text(f"capabilities-ok: received {','.join(ctx.input_responses)}")
    wanted = {
        "elicit_input": _form("Elicitation input", "value"),
        "sample_input": sample("Sample request", max_tokens=50),
    }
    asks = {key: request for key, request in wanted.items() if ctx.can_ask(request)}
    if not asks:
        return _text("No supported capabilities declared")
    raise InputRequired(asks, state={"kind": "capabilities-test"})


@tools.tool
def test_streaming_elicitation() -> ToolResult:
    """Diagnostic tool validating response progress streams"""
    return _text("Streaming complete")


@tools.tool
def test_logging_tool() -> ToolResult:
    """Diagnostic logging validator tool"""
    return _text("Logging evaluated")


# ---- resources ----------------------------------------------------------------------------------------


@resources.resource("test://static-text", name="static-text", title="Static Text Resource", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


@resources.resource("test://static-binary", name="static-binary", title="Static Binary Resource",
                    mime_type="image/png")
def static_binary() -> ResourceContents:
    """A static binary resource (image) for testing"""
    import base64

    return ResourceContents(blob=base64.b64decode(TEST_IMAGE_BASE64))


@resources.resource("test://watched-resource", name="watched-resource", title="Watched Resource",
                    mime_type="text/plain")
def watched_resource() -> str:
    """A resource that auto-updates every 3 seconds"""
    return "Watched resource content"


@resources.resource("test://stateless-static-text", name="Stateless Static Text", mime_type="text/plain")
def stateless_static_text() -> str:
    """A static text resource served on the draft path"""
    return "Static text content from the stateless draft path."


@resources.template("test://template/{id}/data", name="template", title="Resource Template",
                    mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# ---- prompts ------------------------------------------------------------------------------------------


@prompts.prompt(title="Simple Test Prompt")
def test_simple_prompt() -> str:
    """A simple prompt without arguments"""
    return "This is a simple prompt for testing."


@prompts.prompt(title="Prompt With Arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with required arguments

    Args:
        arg1: First test argument
        arg2: Second test argument
    """
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@prompts.prompt(title="Prompt With Embedded Resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[PromptMessage]:
    """A prompt that includes an embedded resource

    Args:
        resourceUri: URI of the resource to embed
    """
    return [
        PromptMessage({"type": "resource", "resource": {
            "uri": resourceUri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}}),
        PromptMessage("Please process the embedded resource above."),
    ]


@prompts.prompt(title="Prompt With Image")
def test_prompt_with_image() -> list[PromptMessage]:
    """A prompt that includes image content"""
    return [
        PromptMessage({"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"}),
        PromptMessage("Please analyze the image above."),
    ]


@prompts.prompt
def test_input_required_result_prompt(ctx: ToolContext) -> str:
    """MRTR: prompt that requires elicitation input"""
    answer = ctx.input_responses.get("user_context")
    if not accepted(answer):
        raise InputRequired({"user_context": _form("What context should the prompt use?", "context")})
    return f"Prompt with context: {_field(answer, 'context')}"


@completions.prompt_argument("test_prompt_with_arguments", "arg1")
def complete_arg1(value: str, context: dict[str, str]) -> list[str]:
    return [v for v in ("test", "testing", "tested") if v.startswith(value)]


# ---- wiring (as in function_app.py) -----------------------------------------------------------------

server = McpServer.from_environment(
    tools, name="mcp-conformance-fixture", resources=resources, prompts=prompts, completions=completions,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="mcp", methods=["POST", "GET", "DELETE", "OPTIONS"])
def mcp(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_mcp, req)


@app.route(route=".well-known/oauth-protected-resource/mcp", methods=["GET", "OPTIONS"])
def protected_resource_metadata(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_metadata, req)


@app.route(route=".well-known/oauth-protected-resource", methods=["GET", "OPTIONS"])
def protected_resource_metadata_root(req: func.HttpRequest) -> func.HttpResponse:
    return serve(lambda request: server.handle_metadata(request, root=True), req)
