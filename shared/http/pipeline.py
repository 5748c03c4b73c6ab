"""The request pipeline: host and origin checks, bearer authentication, then the engine.

This is the one place that knows both sides: it turns token-validation refusals into
RFC 6750 challenges that point at the Protected Resource Metadata, and hands the verified
principal (never the raw token) to the protocol engine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from shared.entra import prm
from shared.entra.tokens import KeysUnavailableError, Principal, Refusal, TokenError, TokenValidator
from shared.features.completions import CompletionRegistry
from shared.features.prompts import PromptRegistry
from shared.features.resources import ResourceRegistry
from shared.features.tools import ClaimsChallengeError, DownstreamAuth, InsufficientScopeError, ToolRegistry
from shared.http.messages import HttpRequest, HttpResponse
from shared.protocol.engine import McpEngine
from shared.protocol.jsonrpc import error_body
from shared.protocol.request_state import RequestStateCodec
from shared.settings import Settings, is_loopback_host, load_settings

if TYPE_CHECKING:
    from shared.bridge.bridge import SignInBridge

log = logging.getLogger("mcp.request")

# RFC 6750 §2.1 b64token, one credential, nothing else on the line.
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_JSON = "application/json"
_MCP_PARAM_HEADER = re.compile(r"mcp-param-[a-z0-9_.-]{1,64}", re.IGNORECASE)
_CORS_EXPOSE = "WWW-Authenticate, Mcp-Protocol-Version"
_CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID"

DEFAULT_SERVER_NAME = "entra-mcp-server"
DEFAULT_SERVER_VERSION = "1.0.0"


class DownstreamFactory(Protocol):
    """Builds the downstream token source for one verified request (``OnBehalfOfService.for_assertion``).

    ``token`` is the caller's already-validated bearer token (the on-behalf-of user assertion);
    ``public_base`` the origin the request came in on, for the consent landing URL; ``expires_at`` the
    token's ``exp`` claim as it was in the token; ``login_hint`` the user's sign-in name, if any.
    """

    def __call__(
        self, token: str, /, *, public_base: str, expires_at: Any, login_hint: str | None
    ) -> DownstreamAuth: ...


class McpServer:
    """An Entra-protected MCP endpoint plus its Protected Resource Metadata."""

    def __init__(
        self,
        settings: Settings,
        tools: ToolRegistry,
        *,
        name: str = DEFAULT_SERVER_NAME,
        version: str = DEFAULT_SERVER_VERSION,
        instructions: str | None = None,
        validator: TokenValidator | None = None,
        downstream: DownstreamFactory | None = None,
        resources: ResourceRegistry | None = None,
        prompts: PromptRegistry | None = None,
        completions: CompletionRegistry | None = None,
        bridge: SignInBridge | None = None,
    ) -> None:
        self.settings = settings
        self.engine = McpEngine(
            tools, server_name=name, server_version=version, instructions=instructions,
            resources=resources, prompts=prompts, completions=completions,
            request_state=RequestStateCodec(settings.request_state_key),
        )
        self.validator = validator or TokenValidator.from_settings(settings)
        self._downstream = downstream
        self._name = name
        # The sign-in bridge (ENTRA_BRIDGE_CLIENT_ID): this app's origin becomes the authorization server clients
        # see. Built on its first request, so a cold start that serves /mcp does not import it; its key is drawn
        # now so that every request in this process signs with the same one.
        self._bridge = bridge
        self._bridge_key = settings.request_state_key or os.urandom(32)
        self._bridge_lock = threading.Lock()
        public = urlsplit(settings.public_base_url).netloc if settings.public_base_url else None
        self._public_hosts = {h for h in (public, settings.website_hostname) if h}

    @classmethod
    def from_environment(
        cls,
        tools: ToolRegistry,
        *,
        name: str = DEFAULT_SERVER_NAME,
        version: str = DEFAULT_SERVER_VERSION,
        instructions: str | None = None,
        resources: ResourceRegistry | None = None,
        prompts: PromptRegistry | None = None,
        completions: CompletionRegistry | None = None,
        validator: TokenValidator | None = None,
        downstream: DownstreamFactory | None = None,
    ) -> McpServer:
        """Read and validate the settings now, at start-up (a bad setting stops the app).

        Without ``downstream``, an OBO_* setting wires on-behalf-of (``shared.downstream.obo``) for ``ctx.downstream``.
        """
        settings = load_settings()
        if downstream is None and settings.obo.mode is not None:
            # Imported here: azure-identity is loaded only by apps that use on-behalf-of.
            from shared.downstream.obo import OnBehalfOfService

            downstream = OnBehalfOfService.from_settings(settings).for_assertion
            if settings.obo.mode == "client_secret" and settings.website_hostname:
                log.warning("OBO_CLIENT_SECRET is meant for local development; in Azure use "
                            "OBO_MANAGED_IDENTITY_CLIENT_ID (no secret) or a certificate")
        return cls(
            settings, tools, name=name, version=version, instructions=instructions, validator=validator,
            downstream=downstream, resources=resources, prompts=prompts, completions=completions,
        )

    # -- MCP endpoint --------------------------------------------------------------

    def handle_mcp(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        principal: Principal | None = None
        try:
            response, principal = self._handle_mcp(request)
        except Exception:
            response = _internal_error()  # before authentication: no verified caller to name
        self._log(response, principal, started)
        return response

    def _handle_mcp(self, request: HttpRequest) -> tuple[HttpResponse, Principal | None]:
        """Serve /mcp; also return the verified caller (None when refused before or at authentication)."""
        base = self.public_base(request)
        if base is None:
            _log_unknown_host(request)
            return _refuse(421, "Misdirected Request: unknown Host"), None
        cors = self._cors_headers(request, base)
        if cors is None:
            return _refuse(403, "Forbidden: Origin not allowed"), None
        if request.method.upper() == "OPTIONS":
            return HttpResponse(204, {**cors, "Access-Control-Allow-Methods": "POST",
                                      "Access-Control-Allow-Headers": _allowed_request_headers(request),
                                      "Access-Control-Max-Age": "600"}), None

        outcome = self._authenticate(request, base)
        if isinstance(outcome, HttpResponse):
            return outcome.with_headers(cors), None
        principal, token = outcome
        try:
            response = self._serve_verified(request, base, principal, token).with_headers(cors)
        except Exception:
            # Caught here rather than in handle_mcp so that the request line still names the verified caller.
            response = _internal_error()
        return response, principal

    def _serve_verified(self, request: HttpRequest, base: str, principal: Principal, token: str) -> HttpResponse:
        """Run the engine for an authenticated request; turn tool-raised auth challenges into HTTP ones."""
        downstream = self._downstream(
            token, public_base=base, expires_at=principal.claims.get("exp"),
            login_hint=principal.preferred_username or None,
        ) if self._downstream else None
        try:
            response = self.engine.handle(request.method, request.headers, request.body,
                                          caller=principal, downstream=downstream)
        except InsufficientScopeError as exc:
            response = replace(self._tool_forbidden(base, exc), rpc=exc.rpc)
        except ClaimsChallengeError as exc:
            # Entra's OBO guidance: hand the claims challenge back to the client, which
            # signs the user in again with these claims and retries.
            log.warning("Tool call needs a new sign-in (claims challenge)")
            response = replace(
                self._challenge(401, prm.metadata_url(base), self.settings.full_scopes, "insufficient_claims",
                                "additional sign-in requirements", claims=exc.claims),
                rpc=exc.rpc,
            )
        return response

    def _authenticate(self, request: HttpRequest, base: str) -> HttpResponse | tuple[Principal, str]:
        metadata = prm.metadata_url(base)
        scopes = self.settings.full_scopes
        if "access_token" in request.query_params:
            return self._challenge(400, metadata, scopes, "invalid_request",
                                   "access tokens are accepted only in the Authorization header")
        header = request.headers.get("authorization")
        if header is None or not header.lower().startswith("bearer"):
            # No bearer credentials at all: a bare challenge starts the OAuth flow.
            return self._challenge(401, metadata, scopes)
        match = _BEARER.match(header)
        if match is None:
            return self._challenge(400, metadata, scopes, "invalid_request", "malformed Authorization header")
        token = match.group(1)
        try:
            return self.validator.validate(token), token
        except KeysUnavailableError:
            log.error("Token signing keys are unavailable; refusing with 503")
            return HttpResponse(503, {"Content-Type": _JSON, "Retry-After": "5"},
                                _oauth_error("temporarily_unavailable", "signing keys are unavailable, retry shortly"))
        except TokenError as exc:
            log.warning("Token refused (%s): %s", exc.refusal.value, exc.detail)
            if exc.refusal is Refusal.INVALID_TOKEN:
                return self._challenge(401, metadata, scopes, "invalid_token", exc.description)
            if exc.refusal is Refusal.INSUFFICIENT_SCOPE:
                return self._challenge(403, metadata, scopes, "insufficient_scope", exc.description)
            # A valid token from a client that is not allowed: a new sign-in cannot help,
            # so no challenge that would send the client round an authentication loop.
            return HttpResponse(403, {"Content-Type": _JSON}, _oauth_error("access_denied", exc.description))

    def _tool_forbidden(self, base: str, exc: InsufficientScopeError) -> HttpResponse:
        scopes = list(self.settings.full_scopes) + [self.settings.full_scope(s) for s in exc.scopes]
        description = "this tool needs " + ", ".join(
            [f"scope {s}" for s in exc.scopes] + [f"app role {r}" for r in exc.roles]
        )
        log.warning("Tool call refused: %s", description)
        return self._challenge(403, prm.metadata_url(base), scopes, "insufficient_scope", description)

    def _challenge(
        self, status: int, metadata: str, scopes: Iterable[str], error: str | None = None,
        description: str | None = None, *, claims: str | None = None,
    ) -> HttpResponse:
        challenge = prm.bearer_challenge(resource_metadata=metadata, scopes=scopes, error=error,
                                         error_description=description, claims=claims)
        body = _oauth_error(error or "unauthorized", description or "a bearer token is required")
        return HttpResponse(status, {"Content-Type": _JSON, "WWW-Authenticate": challenge}, body)

    # -- Protected Resource Metadata -----------------------------------------------

    def handle_metadata(self, request: HttpRequest, *, root: bool = False) -> HttpResponse:
        base = self.public_base(request)
        if base is None:
            _log_unknown_host(request)
            return HttpResponse(421, {"Content-Type": _JSON},
                                _oauth_error("invalid_request", "Misdirected Request: unknown Host"))
        cors = {"Access-Control-Allow-Origin": "*"}
        if request.method.upper() == "OPTIONS":
            return HttpResponse(204, {**cors, "Access-Control-Allow-Methods": "GET", "Access-Control-Max-Age": "600"})
        if request.method.upper() != "GET":
            # Plain text like any HTTP 405: this is not an OAuth error, and RFC 9728 defines no error body.
            return HttpResponse(405, {"Allow": "GET", "Content-Type": "text/plain; charset=utf-8"}, b"Use GET.\n")
        document = prm.protected_resource_metadata(
            # RFC 9728 §3.3: the resource is the URL the well-known path was derived from.
            resource=base if root else prm.resource_url(base),
            # With the bridge, this app's own origin (its RFC 8414 metadata issuer) instead of Entra.
            authorization_server=base if self.settings.bridge.enabled else self.settings.authorization_server,
            scopes=self.settings.full_scopes,
            resource_name=self._name,
        )
        headers = {**cors, "Content-Type": _JSON, "Cache-Control": "public, max-age=3600"}
        return HttpResponse(200, headers, json.dumps(document).encode())

    # -- the sign-in bridge (shared.bridge) -----------------------------------------

    def handle_authorization_server_metadata(self, request: HttpRequest) -> HttpResponse:
        return self._bridged(request, lambda bridge, base: bridge.handle_metadata(request, base))

    def handle_authorize(self, request: HttpRequest) -> HttpResponse:
        return self._bridged(request, lambda bridge, base: bridge.handle_authorize(request, base,
                                                                                   prm.resource_url(base)))

    def handle_token(self, request: HttpRequest) -> HttpResponse:
        return self._bridged(request, lambda bridge, base: bridge.handle_token(request, base,
                                                                               prm.resource_url(base)))

    def handle_sign_in_callback(self, request: HttpRequest) -> HttpResponse:
        return self._bridged(request, lambda bridge, base: bridge.handle_callback(request))

    def handle_register(self, request: HttpRequest) -> HttpResponse:
        return self._bridged(request, lambda bridge, base: bridge.handle_register(request))

    @property
    def bridge(self) -> SignInBridge | None:
        """The sign-in bridge, or None when it is off."""
        if self._bridge is None and self.settings.bridge.enabled:
            with self._bridge_lock:
                if self._bridge is None:
                    from shared.bridge.bridge import SignInBridge  # imported only by apps that use it

                    self._bridge = SignInBridge(self.settings, server_name=self._name, master_key=self._bridge_key)
        return self._bridge

    def _bridged(self, request: HttpRequest, serve: Callable[[SignInBridge, str], HttpResponse]) -> HttpResponse:
        # The issuer and every URL the bridge hands out come from the public origin, so Host is checked first.
        base = self.public_base(request)
        if base is None:
            _log_unknown_host(request)
            return HttpResponse(421, {"Content-Type": _JSON},
                                _oauth_error("invalid_request", "Misdirected Request: unknown Host"))
        bridge = self.bridge
        if bridge is None:
            return HttpResponse(404, {"Content-Type": _JSON}, _oauth_error(
                "not_found", "this server has no sign-in bridge: sign in with Microsoft Entra ID directly "
                "(see the authorization_servers of the protected resource metadata)"))
        try:
            return serve(bridge, base)
        except Exception:
            log.exception("Unhandled error in the sign-in bridge")
            return HttpResponse(500, {"Content-Type": _JSON, "Cache-Control": "no-store"},
                                _oauth_error("server_error", "the sign-in bridge failed; try again"))

    # -- helpers -------------------------------------------------------------------

    def public_base(self, request: HttpRequest) -> str | None:
        """The public origin for this request, or None when its Host is not ours.

        Refusing unknown hosts defeats DNS rebinding. Loopback is allowed when the app runs locally, so it
        works under ``func start`` and behind local tunnels that keep the Host; in Azure (``WEBSITE_HOSTNAME``
        set) no client reaches the app as localhost, and a loopback Host would make it publish loopback URLs.
        """
        host = request.host
        bare = host[:-4] if host.endswith(":443") else host
        if bare in self._public_hosts:
            return self.settings.public_origin
        if self.settings.website_hostname is None and is_loopback_host(host):
            return f"{request.scheme}://{host}"
        return None

    def _cors_headers(self, request: HttpRequest, base: str) -> dict[str, str] | None:
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if origin.rstrip("/").lower() == base.lower() or origin.rstrip("/").lower() in self.settings.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _CORS_EXPOSE,
                    "Vary": "Origin"}
        return None

    def _log(self, response: HttpResponse, principal: Principal | None, started: float) -> None:
        rpc = response.rpc or {}
        fields = {
            "mcp_method": _loggable(rpc.get("method")),
            "mcp_tool": _loggable(rpc.get("name")),
            "caller_oid": principal.oid if principal else "-",
            "caller_client_app": principal.client_app_id if principal else "-",
            "http_status": response.status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        # One line per request. The text is what the Functions host forwards to Application
        # Insights; the flat ``extra`` keys become attributes under OpenTelemetry handlers.
        log.info(
            "mcp request method=%(mcp_method)s tool=%(mcp_tool)s oid=%(caller_oid)s "
            "client=%(caller_client_app)s status=%(http_status)d duration_ms=%(duration_ms).1f",
            fields, extra=fields,
        )


def _allowed_request_headers(request: HttpRequest) -> str:
    """The preflight's allowed headers: the fixed MCP set plus any ``Mcp-Param-*`` it asks for
    (tool parameters mirrored into headers have names no fixed list can know)."""
    asked = request.headers.get("access-control-request-headers", "")
    params = [h.strip() for h in asked.split(",") if _MCP_PARAM_HEADER.fullmatch(h.strip())]
    return ", ".join([_CORS_ALLOW_HEADERS, *params[:32]])


def _loggable(value: str | None) -> str:
    """Caller-chosen text (method, tool name) made safe for a log line: no control characters, bounded."""
    if not value:
        return "-"
    value = value[:100]
    if value.isprintable() and " " not in value:  # the usual case, without a per-character pass
        return value
    return "".join(ch if ch.isprintable() and ch != " " else "?" for ch in value)


def _log_unknown_host(request: HttpRequest) -> None:
    # Otherwise a wrong or missing MCP_PUBLIC_BASE_URL (a custom domain, a proxy) fails without a trace.
    log.warning("Refused a request for unknown Host %s (421); if that is this app's public address, set "
                "MCP_PUBLIC_BASE_URL to it", _loggable(request.host))


def _internal_error() -> HttpResponse:
    """The last-resort answer; called from an ``except`` block so the traceback is logged."""
    log.exception("Unhandled error while serving /mcp")
    return HttpResponse(500, {"Content-Type": _JSON}, error_body(-32603, "Internal error"))


def _refuse(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": _JSON}, error_body(-32600, message))


def _oauth_error(error: str, description: str) -> bytes:
    return json.dumps({"error": error, "error_description": description}).encode()
