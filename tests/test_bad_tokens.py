"""The bad-token corpus: every kind of bad token is refused at the HTTP level by the real registered handler.

``test_tokens.py`` proves the validator's verdict for each kind of bad token; this corpus proves what a client
actually receives for it through ``function_app``'s registered ``/mcp`` function: the status, the RFC 6750 /
RFC 9728 challenge (or deliberately none), a small OAuth error body, and never an echo of the token.
Every row is one distinct attack or mistake; ``CORPUS`` is imported by the log-hygiene suite too.

The corpus runs twice: against the registered function (MCP_APP_ROLES unset: app-only tokens refused) and against
a server that admits applications by app role (MCP_APP_ROLES=Tools.Execute.All), where the same answers must hold:
admitting agents must not open a door for any bad token, nor for an app-only or user token that merely looks
like an admitted agent.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import settings_env
from fake_entra import VSCODE_CLIENT_ID, FakeEntra, b64url, foreign_private_key
from shared.entra.tokens import TokenValidator
from shared.http.pipeline import McpServer
from shared.settings import load_settings
from support import (
    BASE,
    OTHER_CLIENT,
    PRM_PATH,
    Handler,
    Reply,
    assert_well_formed,
    auth,
    handler_for,
    legacy,
    request,
    rpc,
)
from tools import tools as forker_tools

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
# The app role the second server admits applications by (MCP_APP_ROLES); the app-only rows below carry it.
APP_ROLE = "Tools.Execute.All"


@dataclass(frozen=True)
class Attempt:
    """What a caller sends: Authorization header (None: absent), query string, body and content type."""

    authorization: str | None
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    extra_headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # what must never be echoed (the tokens involved)


def bearer(token: str) -> Attempt:
    return Attempt(f"Bearer {token}", secrets=(token,))


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[FakeEntra], Attempt]
    status: int
    # The challenge's error: "invalid_token", "insufficient_scope", "invalid_request"; "" = a bare challenge
    # (no error: no credentials were presented); None = no challenge at all (re-authenticating cannot help).
    error: str | None
    body_error: str


def _tampered_payload(fake: FakeEntra) -> Attempt:
    token = fake.mint()
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["oid"] = fake.user_oid("mallory")
    return Attempt(f"Bearer {header}.{b64url(json.dumps(claims).encode())}.{signature}", secrets=(token,))


def _tampered_signature(fake: FakeEntra) -> Attempt:
    token = fake.mint()
    head, signature = token.rsplit(".", 1)
    flipped = "A" if signature[5] != "A" else "B"
    return bearer(f"{head}.{signature[:5]}{flipped}{signature[6:]}")


def _signature_of_another_token(fake: FakeEntra) -> Attempt:
    mine, theirs = fake.mint(user="mallory"), fake.mint(user="alice")
    return bearer(mine.rsplit(".", 1)[0] + "." + theirs.rsplit(".", 1)[1])


def _unb64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _embedded_jwk(fake: FakeEntra) -> Attempt:
    numbers = foreign_private_key().public_key().public_numbers()

    def uint(v: int) -> str:
        return b64url(v.to_bytes((v.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": uint(numbers.n), "e": uint(numbers.e), "kid": "attacker"}
    return bearer(fake.mint(key=foreign_private_key(), headers={"jwk": jwk, "kid": "attacker"}))


def _duplicate(fake: FakeEntra) -> Attempt:
    token = fake.mint()
    # The Functions host folds repeated headers into one comma-separated value (see tests/harness.py).
    return Attempt(f"Bearer {token}, Bearer {token}", secrets=(token,))


def _valid_plus_forged(fake: FakeEntra) -> Attempt:
    good, forged = fake.mint(), fake.mint(key=foreign_private_key(), user="mallory")
    return Attempt(f"Bearer {forged}, Bearer {good}", secrets=(good, forged))


def _query_and_header(fake: FakeEntra) -> Attempt:
    token = fake.mint()
    return Attempt(f"Bearer {token}", params={"access_token": token}, secrets=(token,))


def _query_only(fake: FakeEntra) -> Attempt:
    token = fake.mint()
    return Attempt(None, params={"access_token": token}, secrets=(token,))


def _form_body(fake: FakeEntra) -> Attempt:
    # RFC 6750 §2.2 form-encoded body parameter: not a bearer method this server supports.
    token = fake.mint()
    return Attempt(None, body=f"access_token={token}".encode(), content_type="application/x-www-form-urlencoded",
                   secrets=(token,))


def _v1_app_only(fake: FakeEntra) -> Attempt:
    sp = fake.service_principal_oid(VSCODE_CLIENT_ID)
    return bearer(fake.mint_v1(scopes=None, claims={"idtyp": "app", "roles": [APP_ROLE], "oid": sp, "sub": sp},
                               remove=["name", "upn", "unique_name"]))


def _huge_header(fake: FakeEntra) -> Attempt:
    return Attempt("Bearer " + "A" * (1024 * 1024))


def _huge_other_header(fake: FakeEntra) -> Attempt:
    return Attempt(None, extra_headers={"Cookie": "c=" + "x" * (256 * 1024)})


CORPUS: list[Case] = [
    # -- lifetime
    Case("expired", lambda f: bearer(f.mint(expires_in=-3600)), 401, "invalid_token", "invalid_token"),
    Case("not-yet-valid", lambda f: bearer(f.mint(not_before_offset=3600)), 401, "invalid_token", "invalid_token"),
    Case("no-exp", lambda f: bearer(f.mint(remove=["exp"])), 401, "invalid_token", "invalid_token"),
    Case("exp-not-a-number", lambda f: bearer(f.mint(claims={"exp": "tomorrow"})), 401, "invalid_token",
         "invalid_token"),
    # -- audience
    Case("aud-graph-app-id", lambda f: bearer(f.mint(claims={"aud": GRAPH_APP_ID})), 401, "invalid_token",
         "invalid_token"),
    Case("aud-graph-url", lambda f: bearer(f.mint(claims={"aud": "https://graph.microsoft.com"})), 401,
         "invalid_token", "invalid_token"),
    Case("aud-another-api", lambda f: bearer(f.mint(claims={"aud": OTHER_CLIENT})), 401, "invalid_token",
         "invalid_token"),
    Case("id-token-for-the-client", lambda f: bearer(f.mint(claims={"aud": VSCODE_CLIENT_ID})), 401,
         "invalid_token", "invalid_token"),
    Case("aud-v1-app-id-uri", lambda f: bearer(f.mint(claims={"aud": f.app_id_uri})), 401, "invalid_token",
         "invalid_token"),
    # -- issuer, tenant, version
    Case("other-tenant-issuer", lambda f: bearer(f.mint(claims={"iss": f"{f.authority}/{OTHER_TENANT}/v2.0",
                                                                "tid": OTHER_TENANT})),
         401, "invalid_token", "invalid_token"),
    Case("tid-mismatch", lambda f: bearer(f.mint(claims={"tid": OTHER_TENANT})), 401, "invalid_token",
         "invalid_token"),
    Case("multi-tenant-common-issuer", lambda f: bearer(f.mint(claims={"iss": f"{f.authority}/common/v2.0"})), 401,
         "invalid_token", "invalid_token"),
    Case("v1-other-tenant", lambda f: bearer(f.mint_v1(claims={"iss": f"https://sts.windows.net/{OTHER_TENANT}/",
                                                               "tid": OTHER_TENANT})),
         401, "invalid_token", "invalid_token"),
    Case("v1-this-tenant", lambda f: bearer(f.mint_v1()), 401, "invalid_token", "invalid_token"),
    # -- client, user, scope
    Case("client-not-allowed", lambda f: bearer(f.mint(client_id=OTHER_CLIENT)), 403, None, "access_denied"),
    Case("no-azp", lambda f: bearer(f.mint(remove=["azp"])), 403, None, "access_denied"),
    Case("app-only", lambda f: bearer(f.mint_app_only()), 403, "insufficient_scope", "insufficient_scope"),
    Case("missing-scope", lambda f: bearer(f.mint(scopes="Files.Read")), 403, "insufficient_scope",
         "insufficient_scope"),
    Case("no-scp-claim", lambda f: bearer(f.mint(scopes=None)), 403, "insufficient_scope", "insufficient_scope"),
    # -- app-only tokens (agents, daemons) and look-alikes: refused with or without MCP_APP_ROLES
    Case("app-only-client-not-allowed", lambda f: bearer(f.mint_app_only([APP_ROLE], client_id=OTHER_CLIENT)), 403,
         None, "access_denied"),
    Case("app-only-no-roles", lambda f: bearer(f.mint_app_only([])), 403, "insufficient_scope", "insufficient_scope"),
    Case("app-only-role-in-other-case", lambda f: bearer(f.mint_app_only([APP_ROLE.lower()])), 403,
         "insufficient_scope", "insufficient_scope"),
    Case("app-only-roles-claim-a-string", lambda f: bearer(f.mint_app_only(claims={"roles": APP_ROLE})), 403,
         "insufficient_scope", "insufficient_scope"),
    Case("app-only-with-scp", lambda f: bearer(f.mint(claims={"idtyp": "app", "roles": [APP_ROLE]})), 403,
         "insufficient_scope", "insufficient_scope"),
    Case("idtyp-app-not-a-string", lambda f: bearer(f.mint_app_only([APP_ROLE], claims={"idtyp": ["app"]})), 403,
         "insufficient_scope", "insufficient_scope"),
    Case("no-idtyp-sub-not-oid", lambda f: bearer(f.mint_app_only([APP_ROLE], remove=["idtyp"],
                                                                  claims={"sub": f.pairwise_sub("mallory")})),
         403, "insufficient_scope", "insufficient_scope"),
    Case("user-token-with-the-app-role-no-scp", lambda f: bearer(f.mint(scopes=None, claims={"roles": [APP_ROLE]})),
         403, "insufficient_scope", "insufficient_scope"),
    Case("app-only-expired", lambda f: bearer(f.mint_app_only([APP_ROLE], expires_in=-3600)), 401, "invalid_token",
         "invalid_token"),
    Case("app-only-forged", lambda f: bearer(f.mint_app_only([APP_ROLE], key=foreign_private_key())), 401,
         "invalid_token", "invalid_token"),
    Case("app-only-other-tenant", lambda f: bearer(f.mint_app_only([APP_ROLE], claims={"tid": OTHER_TENANT})), 401,
         "invalid_token", "invalid_token"),
    Case("app-only-v1", _v1_app_only, 401, "invalid_token", "invalid_token"),
    # -- algorithm and keys
    Case("alg-none", lambda f: bearer(f.mint(alg="none")), 401, "invalid_token", "invalid_token"),
    Case("alg-none-signature-kept", lambda f: bearer(f.mint(headers={"alg": "none"})), 401, "invalid_token",
         "invalid_token"),
    Case("hs256-with-rsa-public-key", lambda f: bearer(f.mint(alg="HS256")), 401, "invalid_token", "invalid_token"),
    Case("rs512-by-tenant-key", lambda f: bearer(f.mint(alg="RS512")), 401, "invalid_token", "invalid_token"),
    Case("unknown-kid", lambda f: bearer(f.mint(key=foreign_private_key(), headers={"kid": "kid-" + uuid.uuid4().hex})),
         401, "invalid_token", "invalid_token"),
    Case("no-kid", lambda f: bearer(f.mint(headers={"kid": None})), 401, "invalid_token", "invalid_token"),
    Case("same-kid-forged-key", lambda f: bearer(f.mint(key=foreign_private_key())), 401, "invalid_token",
         "invalid_token"),
    Case("jku-header", lambda f: bearer(f.mint(headers={"jku": "https://evil.example/keys"})), 401, "invalid_token",
         "invalid_token"),
    Case("x5u-header", lambda f: bearer(f.mint(headers={"x5u": "https://evil.example/cert.pem"})), 401,
         "invalid_token", "invalid_token"),
    Case("x5c-header", lambda f: bearer(f.mint(headers={"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]})), 401,
         "invalid_token", "invalid_token"),
    Case("embedded-jwk-of-signing-key", _embedded_jwk, 401, "invalid_token", "invalid_token"),
    Case("crit-header", lambda f: bearer(f.mint(headers={"crit": ["exp"]})), 401, "invalid_token", "invalid_token"),
    # -- integrity
    Case("tampered-payload", _tampered_payload, 401, "invalid_token", "invalid_token"),
    Case("tampered-signature", _tampered_signature, 401, "invalid_token", "invalid_token"),
    Case("signature-of-another-token", _signature_of_another_token, 401, "invalid_token", "invalid_token"),
    Case("signature-stripped", lambda f: bearer(f.mint().rsplit(".", 1)[0] + "."), 401, "invalid_token",
         "invalid_token"),
    Case("truncated", lambda f: bearer(f.mint()[:-40]), 401, "invalid_token", "invalid_token"),
    Case("two-segments", lambda f: bearer(f.mint().rsplit(".", 1)[0]), 401, "invalid_token", "invalid_token"),
    Case("garbage", lambda f: bearer("not-a-token"), 401, "invalid_token", "invalid_token"),
    Case("garbage-json-segments", lambda f: bearer(b64url(b"[1]") + "." + b64url(b"{}") + ".x"), 401,
         "invalid_token", "invalid_token"),
    # -- size
    Case("huge-token", lambda f: bearer(f.mint(claims={"groups": [str(uuid.UUID(int=i)) for i in range(600)]})), 401,
         "invalid_token", "invalid_token"),
    Case("huge-authorization-header", _huge_header, 401, "invalid_token", "invalid_token"),
    Case("huge-other-header-no-token", _huge_other_header, 401, "", "unauthorized"),
    # -- where and how the token is sent
    Case("token-in-query-string", _query_only, 400, "invalid_request", "invalid_request"),
    Case("token-in-query-and-header", _query_and_header, 400, "invalid_request", "invalid_request"),
    Case("token-in-form-body", _form_body, 401, "", "unauthorized"),
    Case("basic-scheme", lambda f: Attempt("Basic YWxpY2U6cGFzc3dvcmQ="), 401, "", "unauthorized"),
    Case("token-without-scheme", lambda f: Attempt(f.mint()), 401, "", "unauthorized"),
    Case("no-authorization", lambda f: Attempt(None), 401, "", "unauthorized"),
    Case("duplicate-authorization", _duplicate, 400, "invalid_request", "invalid_request"),
    Case("duplicate-authorization-forged-first", _valid_plus_forged, 400, "invalid_request", "invalid_request"),
    Case("bearer-without-token", lambda f: Attempt("Bearer "), 400, "invalid_request", "invalid_request"),
    Case("bearer-with-two-tokens", lambda f: Attempt(f"Bearer {f.mint()} {f.mint()}"), 400, "invalid_request",
         "invalid_request"),
]


def send(attempt: Attempt, body: Any = None, *, handler: Handler | None = None) -> Reply:
    """``attempt`` against the registered ``/mcp`` function, or against ``handler``."""
    headers: dict[str, str | None] = {"Authorization": attempt.authorization, "Content-Type": attempt.content_type,
                                      **attempt.extra_headers}
    if attempt.body is not None:
        return request(raw=attempt.body, headers=headers, params=attempt.params, handler=handler)
    return request(body=body or rpc("tools/call", {"name": "whoami", "arguments": {}}), headers=headers,
                   params=attempt.params, handler=handler)


def app_roles_server(fake: FakeEntra) -> Handler:
    """The forker's tools behind a server that admits applications holding APP_ROLE (MCP_APP_ROLES)."""
    settings = load_settings({**settings_env(fake), "MCP_APP_ROLES": APP_ROLE})
    return handler_for(McpServer(settings, forker_tools, validator=TokenValidator.from_settings(settings)))


@pytest.fixture(scope="module", params=["registered", "with-app-roles"])
def server(request: pytest.FixtureRequest, fake_entra: FakeEntra) -> Handler | None:
    """None: the registered function (MCP_APP_ROLES unset); else a server with MCP_APP_ROLES set."""
    return None if request.param == "registered" else app_roles_server(fake_entra)


def test_the_server_with_app_roles_does_admit_an_agent(fake_entra: FakeEntra) -> None:
    # Otherwise the second run of the corpus would prove nothing.
    reply = send(bearer(fake_entra.mint_app_only([APP_ROLE])), handler=app_roles_server(fake_entra))
    assert reply.status == 200 and reply.json["result"]["structuredContent"]["kind"] == "app"


def test_the_corpus_is_large_and_distinct() -> None:
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 25


@pytest.fixture(scope="module")
def expected_scope(fake_entra: FakeEntra) -> str:
    return f"api://{fake_entra.api_client_id}/user_impersonation"


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_token_is_refused_with_the_right_answer(case: Case, fake_entra: FakeEntra, expected_scope: str,
                                                    server: Handler | None) -> None:
    attempt = case.make(fake_entra)
    reply = send(attempt, handler=server)

    assert reply.status == case.status, (reply.status, reply.body)
    assert_well_formed(reply, allowed={case.status})
    assert reply.json["error"] == case.body_error
    assert len(reply.body) < 400  # small JSON, no stack trace, no reflected input
    if case.error is None:
        # A valid token from a client that is not allowed: no challenge, so no re-authentication loop.
        assert "www-authenticate" not in reply.headers
    else:
        challenge = reply.challenge
        assert challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"
        assert challenge["scope"] == expected_scope
        if case.error:
            assert challenge["error"] == case.error
            assert challenge["error_description"] == reply.json["error_description"]
        else:
            assert set(challenge) == {"resource_metadata", "scope"}  # bare: it only starts the OAuth flow
    answer = reply.body.decode() + json.dumps(reply.headers)
    for secret in attempt.secrets:
        assert secret not in answer
        for segment in secret.split("."):
            if len(segment) >= 16:
                assert segment not in answer


@pytest.mark.parametrize("case", [c for c in CORPUS if c.status != 400], ids=lambda c: c.id)
def test_no_method_is_reachable_with_a_bad_token(case: Case, fake_entra: FakeEntra, server: Handler | None) -> None:
    # Refusal happens before the protocol engine: not even ping, initialize or a notification gets through.
    attempt = case.make(fake_entra)
    for body in (rpc("ping"), rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                 "clientInfo": {"name": "t", "version": "1"}}),
                 rpc("notifications/initialized", id=None)):
        reply = send(attempt, body, handler=server)
        assert reply.status == case.status, (reply.status, body["method"])


# -- the valid token, whatever the letter case of the scheme ------------------------------------------------------

ALL_CASINGS = sorted({"".join(letters) for letters in itertools.product(*((c.lower(), c.upper()) for c in "bearer"))})


def test_valid_token_passes_with_every_casing_of_bearer(fake_entra: FakeEntra) -> None:
    assert len(ALL_CASINGS) == 64
    token = fake_entra.mint()
    for scheme in ALL_CASINGS:
        reply = request(body=rpc("tools/call", {"name": "whoami", "arguments": {}}),
                        headers={"Authorization": f"{scheme} {token}", "MCP-Protocol-Version": "2025-11-25"})
        assert reply.status == 200, (scheme, reply.body)
        assert reply.json["result"]["structuredContent"]["oid"] == fake_entra.user_oid("alice")


def test_valid_token_passes_through_every_protocol_revision(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint()
    for version in ("2025-03-26", "2025-06-18", "2025-11-25", None):
        assert legacy(token, "tools/list", version=version).status == 200
    assert request(body=rpc("tools/list"), headers=auth(token)).status == 200
