"""The sign-in bridge's endpoints, on plain HTTP values: metadata, authorize (GET and the consent POST), the
callback Entra returns to, token and registration. The caller (``shared.http.pipeline``) has already checked
``Host`` and passes the public origin (the issuer) and the canonical MCP URL (the only ``resource`` accepted)."""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from shared.bridge import metadata, pages
from shared.bridge.authorize import (
    AUTHORIZE_PARAMETERS,
    Authorization,
    NoRedirect,
    RedirectError,
    check_authorization,
    entra_authorize_url,
    with_query,
)
from shared.bridge.binding import Flight, SignInBinding, nonce_digest
from shared.bridge.browser import BrowserState
from shared.bridge.clients import Client, ClientError
from shared.bridge.metadata_documents import MetadataDocuments, is_metadata_document_id
from shared.bridge.redirects import is_deliverable, is_loopback_redirect
from shared.bridge.registration import RegistrationError, Registrations, is_registered_id
from shared.bridge.scopes import ScopeMap
from shared.bridge.signing import Signer
from shared.bridge.token import PostForm, TokenExchange, post_form
from shared.http.messages import HttpRequest, HttpResponse
from shared.settings import Settings

log = logging.getLogger("mcp.bridge")

_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024
# Browser-based clients (the MCP Inspector) call these from their own origin. Nothing here reads cookies or
# ambient credentials, so any origin may.
_CORS = {"Access-Control-Allow-Origin": "*"}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class SignInBridge:
    def __init__(
        self,
        settings: Settings,
        *,
        server_name: str,
        master_key: bytes | None = None,
        metadata_documents: MetadataDocuments | None = None,
        post: PostForm = post_form,
    ) -> None:
        bridge = settings.bridge
        if bridge.client_id is None:
            raise ValueError("the sign-in bridge needs ENTRA_BRIDGE_CLIENT_ID")
        self._client_id = bridge.client_id
        self._server_name = server_name
        self._redirect_uris = bridge.redirect_uris
        self._registration_on = bridge.dynamic_registration
        # One master key, one derived key per purpose; per process when MCP_REQUEST_STATE_KEY is unset.
        master = master_key or settings.request_state_key or os.urandom(32)
        self._browser_signer = Signer(master, "browser-state")
        self._form_signer = Signer(master, "consent-form")
        self._registrations = Registrations(Signer(master, "registered-client"), deliverable=self._deliverable)
        self._binding = SignInBinding(Signer(master, "entra-state"), Signer(master, "entra-pkce"))
        self._documents = metadata_documents or MetadataDocuments(bridge.client_metadata_hosts)
        self._scopes = ScopeMap(settings.app_id_uri, settings.required_scopes)
        entra = f"{settings.authority_host}/{settings.tenant_id}/oauth2/v2.0"
        self._entra_authorize = f"{entra}/authorize"
        self._tokens = TokenExchange(
            resolve_client=self.resolve_client, bridge_redirect_uris=self._redirect_uris, scopes=self._scopes,
            entra_token_endpoint=f"{entra}/token", bridge_client_id=self._client_id, binding=self._binding, post=post,
        )

    # -- clients ------------------------------------------------------------------------

    def resolve_client(self, client_id: str) -> Client:
        if is_metadata_document_id(client_id):
            return self._documents.resolve(client_id)
        if is_registered_id(client_id):
            if not self._registration_on:
                raise ClientError("dynamic client registration is turned off on this server")
            return self._registrations.resolve(client_id)
        raise ClientError("client_id must be the URL of a client metadata document or a client_id this server "
                          "registered")

    def _deliverable(self, uri: str) -> bool:
        return is_deliverable(uri, self._redirect_uris)

    # -- endpoints ----------------------------------------------------------------------

    def handle_metadata(self, request: HttpRequest, issuer: str) -> HttpResponse:
        if (preflight := _preflight(request, "GET")) is not None:
            return preflight
        if request.method.upper() != "GET":
            return _method_not_allowed("GET")
        document = metadata.authorization_server_metadata(issuer, scopes=self._scopes.required,
                                                          registration=self._registration_on)
        return HttpResponse(200, {**_CORS, "Content-Type": _JSON, "Cache-Control": "public, max-age=3600"},
                            json.dumps(document).encode())

    def handle_authorize(self, request: HttpRequest, issuer: str, resource: str) -> HttpResponse:
        method = request.method.upper()
        if method == "GET":
            return self._authorize(dict(request.query_params), request, issuer, resource, decision=None)
        if method != "POST":
            return _method_not_allowed("GET, POST")
        # The consent form. Origin, when the browser sends one, must be ours: a cross-site form post is refused
        # before its fields are even read. An opaque origin ("null": privacy settings, sandboxed frames) proves
        # nothing either way; the form token below, bound to this browser's SameSite cookie, decides.
        origin = request.headers.get("origin")
        if origin not in (None, "null") and origin.rstrip("/").lower() != issuer.lower():
            return pages.error_page(403, "The consent form was sent from another site.")
        form = _form(request)
        if form is None:
            return pages.error_page(400, "The consent form could not be read.")
        return self._authorize(form, request, issuer, resource, decision=form.get("decision", ""),
                               form_token=form.get("form_token", ""))

    def _authorize(self, params: Mapping[str, str], request: HttpRequest, issuer: str, resource: str, *,
                   decision: str | None, form_token: str = "") -> HttpResponse:
        try:
            authorization = check_authorization(params, resolve_client=self.resolve_client,
                                                bridge_redirect_uris=self._redirect_uris, resource=resource,
                                                scopes=self._scopes)
        except NoRedirect as exc:
            log.warning("Sign-in bridge: authorize request shown an error page: %s", exc.message)
            if decision is None and _wants_json(request) and exc.unknown_client:
                # mcp-remote probes /authorize for JSON before opening a browser, and registers again on
                # invalid_client (a client ID sealed with an older key, or by another deployment).
                return _json(401, {"error": "invalid_client", "error_description": exc.message})
            return pages.error_page(400, exc.message)
        except RedirectError as exc:
            log.warning("Sign-in bridge: authorize request refused: %s", exc.error)
            return _redirect(exc.location)
        client, redirect_uri = authorization.client, authorization.redirect_uri
        browser = BrowserState.from_headers(request.headers, self._browser_signer)
        fields = {k: params[k] for k in AUTHORIZE_PARAMETERS if k in params}

        if decision is None:
            # Remembered consent skips the page only for a loopback redirect URI (the code goes back to the
            # user's own machine). A hosted callback gets the page every time: otherwise any site could open
            # this URL with its own state and challenge and have the browser carried silently to that client.
            if browser.has_consented(client.client_id, redirect_uri) and is_loopback_redirect(redirect_uri):
                log.info("Sign-in bridge: %s sent to Entra (consent remembered)", _describe(client))
                return _redirect(self._to_entra(authorization, browser, issuer))
            token = browser.form_token(self._form_signer, fields)
            cookie = {"Set-Cookie": browser.set_cookie(self._browser_signer)} if browser.is_new else {}
            return pages.consent_page(client=client, redirect_uri=redirect_uri, server_name=self._server_name,
                                      resource=resource, action=issuer + metadata.AUTHORIZE_PATH,
                                      fields={**fields, "form_token": token}, headers=cookie)

        # A decision needs this browser's cookie and a fresh form token minted for it and these exact fields.
        if browser.is_new or not browser.accepts_form_token(self._form_signer, form_token, fields):
            log.warning("Sign-in bridge: consent form refused (not from this browser's consent page, or stale)")
            return pages.error_page(403, "This consent form did not come from this browser's sign-in page, or it "
                                         "has expired. Start the sign-in again from your app.")
        if decision == "deny":
            log.info("Sign-in bridge: the user denied %s", _describe(client))
            error = RedirectError(redirect_uri, authorization.state, "access_denied", "the user denied the request")
            return _redirect(error.location)
        if decision != "allow":
            return pages.error_page(400, "The consent form has no decision.")
        browser.remember_consent(client.client_id, redirect_uri)
        log.info("Sign-in bridge: the user allowed %s; sent to Entra", _describe(client))
        return _redirect(self._to_entra(authorization, browser, issuer),
                         {"Set-Cookie": browser.set_cookie(self._browser_signer)})

    def _to_entra(self, authorization: Authorization, browser: BrowserState, issuer: str) -> str:
        client_id, redirect_uri = authorization.client.client_id, authorization.redirect_uri
        flight = Flight(client_id=client_id, redirect_uri=redirect_uri, client_state=authorization.state,
                        browser=nonce_digest(browser.nonce))
        return entra_authorize_url(
            self._entra_authorize, client_id=self._client_id, callback_uri=issuer + metadata.CALLBACK_PATH,
            scopes=authorization.scopes, state=self._binding.seal(flight),
            code_challenge=self._binding.entra_challenge(client_id, redirect_uri, authorization.code_challenge),
            prompt=authorization.prompt,
        )

    def handle_callback(self, request: HttpRequest) -> HttpResponse:
        """Where Entra sends the user back: forward the code (or error) to the client, if this browser consented."""
        if request.method.upper() != "GET":
            return _method_not_allowed("GET")
        params = request.query_params
        flight = self._binding.open(params.get("state", ""))
        if flight is None:
            log.warning("Sign-in bridge: callback with a state this server did not issue (or expired)")
            return pages.error_page(400, "This sign-in response was not started by this server, or it took too long. "
                                         "Start the sign-in again from your app.")
        browser = BrowserState.from_headers(request.headers, self._browser_signer)
        if browser.is_new or not hmac.compare_digest(nonce_digest(browser.nonce), flight.browser):
            # The confused-deputy attempt: a link to Entra made in another browser (or by hand) came back here.
            log.warning("Sign-in bridge: callback refused: the sign-in was started in another browser")
            return pages.error_page(403, "This sign-in was not started in this browser, so it was stopped here. "
                                         "Start the sign-in again from your app.")
        state = {"state": flight.client_state} if flight.client_state is not None else {}
        if "error" in params:
            answer = {"error": params["error"][:100],
                      "error_description": params.get("error_description", "")[:1000], **state}
            log.warning("Sign-in bridge: Entra answered %s", answer["error"][:40])
        elif params.get("code"):
            answer = {"code": params["code"], **state}
            log.info("Sign-in bridge: Entra signed the user in; code forwarded to the client")
        else:
            return pages.error_page(400, "Microsoft Entra ID answered without a code.")
        return _redirect(with_query(flight.redirect_uri, answer))

    def handle_token(self, request: HttpRequest, issuer: str, resource: str) -> HttpResponse:
        if (preflight := _preflight(request, "POST")) is not None:
            return preflight
        if request.method.upper() != "POST":
            return _method_not_allowed("POST")
        form = _form(request)
        if form is None:
            return _json(400, {"error": "invalid_request",
                               "error_description": f"the body must be {_FORM}, at most {MAX_BODY_BYTES} bytes"})
        status, body = self._tokens.exchange(form, resource=resource, callback_uri=issuer + metadata.CALLBACK_PATH)
        return _json(status, body)

    def handle_register(self, request: HttpRequest) -> HttpResponse:
        if (preflight := _preflight(request, "POST")) is not None:
            return preflight
        if not self._registration_on:
            return _json(404, {"error": "not_found", "error_description": "dynamic client registration is off"})
        if request.method.upper() != "POST":
            return _method_not_allowed("POST")
        if _media_type(request) != _JSON or len(request.body) > MAX_BODY_BYTES:
            return _json(400, {"error": "invalid_client_metadata",
                               "error_description": f"the body must be a JSON object ({_JSON})"})
        try:
            metadata_request: Any = json.loads(request.body)
            registered = self._registrations.register(metadata_request)
        except (ValueError, RecursionError):
            return _json(400, {"error": "invalid_client_metadata", "error_description": "the body is not JSON"})
        except RegistrationError as exc:
            log.warning("Sign-in bridge: registration refused: %s", exc.error)
            return _json(400, {"error": exc.error, "error_description": exc.description})
        log.info("Sign-in bridge: registered a client")
        return _json(201, registered)


def _describe(client: Client) -> str:
    """A log-safe name for a client: its metadata host, or just 'a registered client' (names are client text)."""
    return f"client from {client.vouched_by}" if client.vouched_by else "a registered client"


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def _media_type(request: HttpRequest) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _form(request: HttpRequest) -> dict[str, str] | None:
    if _media_type(request) != _FORM or len(request.body) > MAX_BODY_BYTES:
        return None
    try:
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def _redirect(location: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(302, {"Location": location, **_NO_STORE, "Referrer-Policy": "no-referrer", **(headers or {})})


def _json(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(status, {**_CORS, **_NO_STORE, "Content-Type": _JSON}, json.dumps(body).encode())


def _preflight(request: HttpRequest, methods: str) -> HttpResponse | None:
    if request.method.upper() != "OPTIONS":
        return None
    return HttpResponse(204, {**_CORS, "Access-Control-Allow-Methods": methods,
                              "Access-Control-Allow-Headers": "Content-Type, Authorization, MCP-Protocol-Version",
                              "Access-Control-Max-Age": "600"})


def _method_not_allowed(allow: str) -> HttpResponse:
    return HttpResponse(405, {"Allow": allow, "Content-Type": "text/plain; charset=utf-8"}, b"Method not allowed.\n")
