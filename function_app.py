"""Azure Functions entry point: an Entra-protected remote MCP server.

Wiring only. Tools live in ``tools.py``; the work is done in the ``shared`` package.
Settings are validated here, at start-up: a missing or malformed one stops the app with
an error that names it.
"""

import azure.functions as func

from shared.downstream.consent import consent_page
from shared.http.functions import serve
from shared.http.pipeline import McpServer
from tools import tools

server = McpServer.from_environment(
    tools,
    name="entra-mcp-server",
    instructions="Tools run as the signed-in user. Call whoami to see who that is.",
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# GET and DELETE are routed so the code can answer 405 (the host would answer 404).
@app.route(route="mcp", methods=["POST", "GET", "DELETE", "OPTIONS"])
def mcp(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_mcp, req)


@app.route(route=".well-known/oauth-protected-resource/mcp", methods=["GET", "OPTIONS"])
def protected_resource_metadata(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_metadata, req)


@app.route(route=".well-known/oauth-protected-resource", methods=["GET", "OPTIONS"])
def protected_resource_metadata_root(req: func.HttpRequest) -> func.HttpResponse:
    return serve(lambda request: server.handle_metadata(request, root=True), req)


# The sign-in bridge (ENTRA_BRIDGE_CLIENT_ID; README "Which clients can sign in"): 404 when it is off.
@app.route(route=".well-known/oauth-authorization-server", methods=["GET", "OPTIONS"])
def authorization_server_metadata(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_authorization_server_metadata, req)


@app.route(route="oauth/authorize", methods=["GET", "POST"])
def authorize(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_authorize, req)


@app.route(route="oauth/entra-callback", methods=["GET"])
def sign_in_callback(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_sign_in_callback, req)


@app.route(route="oauth/token", methods=["POST", "OPTIONS"])
def token(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_token, req)


@app.route(route="oauth/register", methods=["POST", "OPTIONS"])
def register(req: func.HttpRequest) -> func.HttpResponse:
    return serve(server.handle_register, req)


# Where Entra sends the user back after a downstream-API consent prompt (docs/obo.md).
@app.route(route="consent", methods=["GET"])
def consent(req: func.HttpRequest) -> func.HttpResponse:
    return serve(consent_page, req)
