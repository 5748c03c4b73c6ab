"""On-behalf-of (OBO): tokens for downstream APIs (Microsoft Graph, ...) as the signed-in user.

The MCP client's token is for this server only and never leaves it. A tool that calls another API asks
``ctx.downstream_token(scope)``; this module exchanges the caller's token (the *user assertion*) at
Entra's token endpoint for a token to that API, with azure-identity's ``OnBehalfOfCredential``.

Why the shape below:

* **Token reuse.** Each credential has its own token cache and its first ``get_token`` always goes to
  Entra, so one credential is kept per user assertion in a bounded LRU that expires with the assertion.
  N tool calls with one token cost one OBO request. Keyed by a hash of the assertion, never by ``oid``
  alone: a new sign-in (for example after an MFA step-up) must not reuse a token minted from an older one,
  and two users can never meet in one entry.
* **Single flight.** One lock per entry: concurrent calls by one user wait for the first exchange
  instead of all racing to Entra.
* **Fresh credential after any failure.** MSAL remembers error answers (HTTP 400 for 60 s, 429/5xx for
  ``Retry-After``) per credential; a retry, or a retry after the user granted consent, must really ask
  Entra again.
* **Bounded time.** azure-core's own retries sleep for any ``Retry-After`` the server sends, however long,
  so they are off; this module retries itself with short per-attempt timeouts inside a total budget,
  far below the Functions HTTP limit of 230 s, and then fails with a ToolError the user can read.
* **Users only.** On-behalf-of needs a user: an application calling as itself (an app-only token, admitted by
  ``MCP_APP_ROLES``) gets a ToolError before any token request, never an exchange Entra would refuse anyway.
* **Lazy imports.** azure-identity (and so MSAL, azure-core) is imported on the first exchange, not at
  start-up: cold starts of apps whose tools never call downstream APIs stay fast.

Nothing here logs or puts into an error message a token, an assertion or a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.downstream.consent import consent_url
from shared.downstream.retry import RetryBudget, parse_retry_after, try_again_hint
from shared.entra.tokens import kind_of_validated_token
from shared.features.tools import ClaimsChallengeError, ToolError, UrlElicitationRequired
from shared.settings import DEFAULT_GRAPH_API_BASE_URL, OboCredentialSettings, Settings, SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken

log = logging.getLogger("mcp.obo")

# RetryBudget and parse_retry_after live in shared.downstream.retry; they stay importable from here
# (from_settings takes a budget).
__all__ = ["APP_CALLER_MESSAGE", "OnBehalfOfService", "RetryBudget", "UserDownstream", "is_microsoft_authority",
           "parse_retry_after"]

# The audience Entra expects in a managed identity token used as a federated identity credential.
MANAGED_IDENTITY_ASSERTION_SCOPE = "api://AzureADTokenExchange/.default"

# Entra's public and sovereign cloud login hosts. azure-identity validates them through instance discovery;
# any other host (a private test identity provider, Azure Stack) needs disable_instance_discovery=True or
# MSAL refuses it when offline.
MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "login-us.microsoftonline.com",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
    "login.sovcloud-identity.fr",
    "login.sovcloud-identity.de",
    "login.sovcloud-identity.sg",
})

# Renew reused tokens this long before they expire, so a token never dies on its way to the API.
_EXPIRY_MARGIN_SECONDS = 300
# Used when the caller does not say when the assertion expires (the pipeline always does).
_DEFAULT_ENTRY_TTL_SECONDS = 600

# What a tool reports when an application calling as itself (app-only token) asks for an on-behalf-of token.
APP_CALLER_MESSAGE = (
    "This tool calls another API on behalf of the signed-in user, but the caller is an application using its own "
    "identity (an app-only token), so there is no user to act for. Call it with a user's (delegated) token."
)

# Entra error codes (AADSTS...) grouped by what the user or the operator can do about them.
_CONSENT_CODES = frozenset({65001, 65004})
_SIGN_IN_AGAIN_CODES = frozenset({50013, 500133, 50173, 700082, 50078, 50079, 50076})
_MISCONFIGURED_CODES = frozenset({
    7000215, 7000222, 700027, 700016, 7000112, 700024, 700211, 700212, 700213, 70021, 7000218,
    70011, 500011, 500021, 90002, 650052, 650056, 50011,
})


def is_microsoft_authority(authority_host: str) -> bool:
    """True for Entra's own cloud login hosts (public and sovereign clouds)."""
    return (urlsplit(authority_host).hostname or "").lower() in MICROSOFT_AUTHORITY_HOSTS


class _Transient(Exception):
    """An attempt failed in a way that may pass (throttling, outage, timeout); ``message`` is for the user."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class _ManagedIdentityUnavailable(Exception):
    """The managed identity endpoint did not give us an assertion (raised inside MSAL, found via __cause__)."""


@dataclass
class _Entry:
    """One user assertion's credential. ``lock`` makes its token exchanges single-flight."""

    credential: Any
    expires_at: float
    lock: threading.Lock


class OnBehalfOfService:
    """Exchanges verified caller tokens for downstream tokens, reusing them per user assertion.

    Build it once per process with :meth:`from_settings`; call :meth:`for_assertion` per request.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        authority_host: str,
        credential: OboCredentialSettings,
        graph_api_base_url: str = DEFAULT_GRAPH_API_BASE_URL,
        public_base_url: str | None = None,
        budget: RetryBudget | None = None,
        max_entries: int = 1000,
    ) -> None:
        if credential.mode is None:
            raise ValueError("an on-behalf-of credential (managed identity, certificate or secret) is required")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority_host = authority_host.rstrip("/")
        self.graph_api_base_url = graph_api_base_url.rstrip("/")
        self.public_base_url = public_base_url
        self.budget = budget or RetryBudget()
        self.max_entries = max_entries
        self._mode = credential.mode
        self._secret = credential.client_secret
        self._certificate: bytes | None = None
        self._certificate_password = credential.certificate_password
        self._mi_client_id = credential.managed_identity_client_id
        if credential.certificate_path:
            self._certificate = _load_certificate(credential.certificate_path, credential.certificate_password)

        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._mi_lock = threading.Lock()
        self._mi_credential: Any = None
        self._mi_token: AccessToken | None = None
        # The token endpoint's last error answer in this thread. MSAL turns a 5xx into an exception without
        # the response, so an azure-core response hook keeps its status, Retry-After and body for _classify.
        self._answer = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> OnBehalfOfService:
        """The service for this app's settings (a bad certificate stops the app at start-up)."""
        return cls(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            authority_host=settings.authority_host,
            credential=settings.obo,
            graph_api_base_url=settings.graph_api_base_url,
            public_base_url=settings.public_origin,
            **options,
        )

    @property
    def mode(self) -> str:
        """``managed_identity``, ``certificate`` or ``client_secret``."""
        return self._mode

    def __repr__(self) -> str:
        return f"OnBehalfOfService(mode={self._mode!r}, client_id={self.client_id!r}, entries={len(self._entries)})"

    # -- per request -------------------------------------------------------------------------------

    def for_assertion(
        self,
        assertion: str,
        *,
        public_base: str | None = None,
        expires_at: float | None = None,
        login_hint: str | None = None,
    ) -> UserDownstream:
        """The downstream token source for one verified request. Cheap: no credential, no network yet.

        Call it only with a token the pipeline has already validated. ``public_base`` is the origin the
        request came in on (for the consent landing page); ``expires_at`` the token's ``exp``.
        """
        return UserDownstream(self, assertion, public_base=public_base or self.public_base_url,
                              expires_at=expires_at, login_hint=login_hint)

    def get_token(
        self,
        assertion: str,
        scopes: tuple[str, ...],
        *,
        public_base: str | None = None,
        expires_at: float | None = None,
        login_hint: str | None = None,
    ) -> str:
        """A downstream access token for ``scopes`` on behalf of the assertion's user.

        Raises UrlElicitationRequired (consent missing), ClaimsChallengeError (Conditional Access/MFA:
        the client must sign in again) or ToolError (anything else, with a message the user can act on).
        """
        if not scopes:
            raise ToolError("A downstream token needs at least one scope, e.g. https://graph.microsoft.com/User.Read")
        key = hashlib.sha256(assertion.encode()).hexdigest()
        entry = self._entry(key, assertion, expires_at)
        deadline = time.monotonic() + self.budget.total_seconds
        if not entry.lock.acquire(timeout=self.budget.total_seconds):
            raise ToolError("Timed out waiting for another request to get a token for you; try again.")
        try:
            attempt = 0
            while True:
                attempt += 1
                self._answer.value = None
                try:
                    return entry.credential.get_token(*scopes).token
                except Exception as exc:
                    # Whatever happened, the next try must reach Entra, not MSAL's memory of this answer.
                    entry.credential = self._new_credential(assertion)
                    failure = self._classify(exc, scopes, public_base, login_hint)
                    delay = self.budget.next_delay(attempt, failure.retry_after, deadline)
                    if delay is None:
                        log.error("On-behalf-of token request failed after %d attempt(s): %s", attempt, failure.message)
                        raise ToolError(failure.message) from None
                    log.warning("On-behalf-of token request failed (attempt %d), retrying in %.1f s: %s",
                                attempt, delay, failure.message)
                    time.sleep(delay)
        finally:
            entry.lock.release()

    # -- cache -------------------------------------------------------------------------------------

    @property
    def cached_credentials(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every cached credential (and the managed identity assertion)."""
        with self._lock:
            self._entries.clear()
        with self._mi_lock:
            self._mi_token = None

    def _entry(self, key: str, assertion: str, expires_at: float | None) -> _Entry:
        now = time.time()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > now:
                self._entries.move_to_end(key)
                return entry
            self._entries.pop(key, None)
            # Expired entries leave first, then the least recently used ones: memory stays bounded.
            for stale in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[stale]
            while len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            entry = _Entry(
                credential=self._new_credential(assertion),
                expires_at=float(expires_at) if expires_at else now + _DEFAULT_ENTRY_TTL_SECONDS,
                lock=threading.Lock(),
            )
            self._entries[key] = entry
            return entry

    # -- credentials -------------------------------------------------------------------------------

    def _transport_options(self) -> dict[str, Any]:
        return {
            "connection_timeout": self.budget.connect_timeout,
            "read_timeout": self.budget.read_timeout,
            "retry_total": 0,  # retries (bounded, Retry-After aware) happen in get_token
        }

    def _new_credential(self, assertion: str) -> Any:
        from azure.identity import OnBehalfOfCredential

        kwargs: dict[str, Any] = {
            "authority": self.authority_host,
            "user_assertion": assertion,
            "raw_response_hook": self._observe,
            **self._transport_options(),
        }
        if not is_microsoft_authority(self.authority_host):
            kwargs["disable_instance_discovery"] = True
        if self._mode == "managed_identity":
            kwargs["client_assertion_func"] = self._managed_identity_assertion
        elif self._mode == "certificate":
            kwargs["client_certificate"] = self._certificate
            kwargs["password"] = self._certificate_password
        else:
            kwargs["client_secret"] = self._secret
        return OnBehalfOfCredential(self.tenant_id, self.client_id, **kwargs)

    def _observe(self, pipeline_response: Any) -> None:
        """azure-core ``raw_response_hook``: remember an error answer (status, headers, JSON body)."""
        response = pipeline_response.http_response
        if response.status_code < 400:
            return
        body: Any = {}
        with contextlib.suppress(Exception):
            body = json.loads(response.text())
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        self._answer.value = (response.status_code, headers, body if isinstance(body, Mapping) else {})

    def _managed_identity_assertion(self) -> str:
        """The managed identity's token for api://AzureADTokenExchange: this app's secretless client credential.

        Cached until five minutes before it expires, shared by every user's credential.
        """
        with self._mi_lock:
            token = self._mi_token
            if token is not None and token.expires_on - time.time() > _EXPIRY_MARGIN_SECONDS:
                return token.token
            if self._mi_credential is None:
                from azure.identity import ManagedIdentityCredential

                self._mi_credential = ManagedIdentityCredential(
                    client_id=self._mi_client_id, **self._transport_options()
                )
            try:
                token = self._mi_credential.get_token(MANAGED_IDENTITY_ASSERTION_SCOPE)
            except Exception as exc:
                # A new client next time: MSAL would otherwise replay this failure from its throttling memory.
                self._mi_credential = None
                raise _ManagedIdentityUnavailable(type(exc).__name__) from exc
            self._mi_token = token
            return token.token

    # -- errors ------------------------------------------------------------------------------------

    def _classify(
        self, exc: Exception, scopes: tuple[str, ...], public_base: str | None, login_hint: str | None
    ) -> _Transient:
        """Turn an azure-identity failure into the user-facing outcome; raise it, or return it if retryable."""
        status, headers, body = _error_details(exc)
        observed = getattr(self._answer, "value", None)
        if observed is not None:
            status, headers, body = observed[0], observed[1], body or observed[2]
        error = str(body.get("error") or "")
        codes = {int(c) for c in body.get("error_codes") or () if str(c).isdigit()}
        code_text = ", ".join(f"AADSTS{c}" for c in sorted(codes)) or error or "no error code"
        what = " ".join(scopes)

        if status is not None:
            _log_entra_error(status, body)
        if codes & _CONSENT_CODES or body.get("suberror") == "consent_required":
            url = consent_url(authority_host=self.authority_host, tenant_id=self.tenant_id, client_id=self.client_id,
                              scopes=scopes, public_base=public_base, login_hint=login_hint)
            raise UrlElicitationRequired(
                url,
                f"This server needs your consent to call {_resource_name(scopes)} on your behalf ({what}). "
                "Sign in and accept the permission request, or ask an administrator to grant admin consent.",
            )
        claims = body.get("claims")
        if isinstance(claims, str) and claims.strip():
            # Entra's OBO guidance: send the challenge back to the client, which signs the user in again.
            raise ClaimsChallengeError(base64.b64encode(claims.encode()).decode())
        if status == 429 or (status is not None and status >= 500) or error in ("temporarily_unavailable",
                                                                                  "server_error"):
            retry_after = parse_retry_after(headers.get("retry-after"))
            verb = "is throttling" if status == 429 else "is unavailable for"
            return _Transient(f"Microsoft Entra ID {verb} token requests ({code_text}).{try_again_hint(retry_after)}",
                              retry_after)
        if status is None:
            if _caused_by(exc, _ManagedIdentityUnavailable):
                return _Transient("This server's managed identity could not provide its credential; "
                                  "try again shortly. If it persists, tell the server's administrator.")
            if _is_network_error(exc):
                return _Transient("Microsoft Entra ID did not answer in time. Try again shortly.")
            log.error("On-behalf-of failed without an answer from Entra (%s)", type(exc.__cause__ or exc).__name__)
            raise ToolError("Could not get a token on your behalf because of a server configuration problem. "
                            "Tell the server's administrator.") from None
        if codes & _SIGN_IN_AGAIN_CODES or error == "interaction_required":
            raise ToolError(f"Microsoft Entra ID wants you to sign in again before this server can act on your "
                            f"behalf ({code_text}). Sign out of this server in your MCP client, sign in, and retry.")
        if codes & _MISCONFIGURED_CODES or error in ("invalid_client", "unauthorized_client", "invalid_scope"):
            raise ToolError(f"This server could not get a token for {what} on your behalf because its app "
                            f"registration or credential is misconfigured ({code_text}). "
                            "Tell the server's administrator.")
        raise ToolError(f"Microsoft Entra ID refused to issue a token for {what} on your behalf ({code_text}).")


class UserDownstream:
    """Downstream tokens for one verified request (what tools see as ``ctx.downstream``)."""

    def __init__(
        self,
        service: OnBehalfOfService,
        assertion: str,
        *,
        public_base: str | None,
        expires_at: float | None,
        login_hint: str | None = None,
    ) -> None:
        self._service = service
        self._assertion = assertion
        self._public_base = public_base
        self._expires_at = expires_at
        self._login_hint = login_hint
        self._for_a_user: bool | None = None  # decided on the first get_token: most requests never ask

    @property
    def for_a_user(self) -> bool:
        """Whether the assertion is a user's (delegated) token, the only kind on-behalf-of can exchange.

        The pipeline validated the assertion before this object existed, so its payload is read, not re-verified;
        the decision is the validator's own (``shared.entra.tokens.is_app_only``), so the two never disagree.
        """
        if self._for_a_user is None:
            self._for_a_user = kind_of_validated_token(self._assertion) == "user"
        return self._for_a_user

    @property
    def graph_base_url(self) -> str:
        """GRAPH_API_BASE_URL: where the Microsoft Graph helper sends requests."""
        return self._service.graph_api_base_url

    @property
    def budget(self) -> RetryBudget:
        """The time budget downstream calls share (the Graph helper uses it too)."""
        return self._service.budget

    def get_token(self, *scopes: str) -> str:
        """A downstream token for ``scopes`` on behalf of the caller; ToolError when the caller is an application."""
        self._refuse_applications()
        return self._service.get_token(self._assertion, tuple(scopes), public_base=self._public_base,
                                       expires_at=self._expires_at, login_hint=self._login_hint)

    async def get_token_async(self, *scopes: str) -> str:
        """:meth:`get_token` for async tools: the exchange runs in a worker thread, the event loop stays free."""
        import asyncio  # here, like shared.callables.run_awaitable: only async tools need it

        self._refuse_applications()  # before the thread hop: nothing to wait for
        return await asyncio.to_thread(self.get_token, *scopes)

    def _refuse_applications(self) -> None:
        if not self.for_a_user:
            log.warning("On-behalf-of refused: the caller is an application (app-only token); no token request made")
            raise ToolError(APP_CALLER_MESSAGE)

    def __repr__(self) -> str:
        return "UserDownstream(<assertion hidden>)"


# -- helpers ---------------------------------------------------------------------------------------


def _load_certificate(path: str, password: str | None) -> bytes:
    """Read the OBO certificate and check it now, so a bad one stops the app at start-up, naming the setting."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SettingsError({"OBO_CLIENT_CERTIFICATE_PATH": f"cannot be read ({exc.strerror})"}) from None
    secret = password.encode() if password else None
    try:
        if b"-----BEGIN" in data:
            load_pem_private_key(data, password=secret)
            x509.load_pem_x509_certificate(data)
        else:
            key, cert, _ = pkcs12.load_key_and_certificates(data, secret)
            if key is None or cert is None:
                raise ValueError("no private key or certificate")
    except (ValueError, TypeError):
        raise SettingsError({
            "OBO_CLIENT_CERTIFICATE_PATH": "must be a PEM file with the certificate and its private key, or a "
            "PFX/PKCS#12 file (check OBO_CLIENT_CERTIFICATE_PASSWORD)"
        }) from None
    return data


def _error_details(exc: BaseException) -> tuple[int | None, Mapping[str, str], Mapping[str, Any]]:
    """Status, lower-cased headers and JSON body of the token endpoint's error answer, if there was one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None, {}, {}
    status = getattr(response, "status_code", None)
    headers = {str(k).lower(): str(v) for k, v in dict(getattr(response, "headers", {}) or {}).items()}
    body: Any = {}
    with contextlib.suppress(Exception):
        body = response.json()
    return status, headers, body if isinstance(body, Mapping) else {}


def _log_entra_error(status: int, body: Mapping[str, Any]) -> None:
    # Entra's error_description names apps and tenants but never tokens or secrets; its first sentence
    # (before "Trace ID") plus the IDs is what an operator needs to look the failure up.
    description = str(body.get("error_description") or "").split(" Trace ID:", 1)[0][:300]
    log.warning(
        "Entra token endpoint answered %s error=%s codes=%s suberror=%s trace_id=%s correlation_id=%s: %s",
        status, body.get("error"), body.get("error_codes"), body.get("suberror"), body.get("trace_id"),
        body.get("correlation_id"), description,
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_network_error(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return _caused_by(exc, ServiceRequestError) or _caused_by(exc, ServiceResponseError) or _caused_by(exc, OSError)


def _resource_name(scopes: tuple[str, ...]) -> str:
    resource = scopes[0].rsplit("/", 1)[0] if "/" in scopes[0] else scopes[0]
    host = (urlsplit(resource).hostname or "").lower()
    return "Microsoft Graph" if host.startswith("graph.") or "graph" in host.split(".")[0] else resource
