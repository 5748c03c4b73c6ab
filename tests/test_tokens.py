"""Entra access-token validation against real RS256 tokens from the fake tenant (keys fetched over HTTPS)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import settings_env
from fake_entra import AZURE_CLI_CLIENT_ID, VSCODE_CLIENT_ID, FakeEntra, b64url, foreign_private_key
from shared.entra.keys import JwksCache, KeyFetchError
from shared.entra.logsafe import log_value
from shared.entra.tokens import (
    DEFAULT_LEEWAY_SECONDS,
    MAX_TOKEN_LENGTH,
    KeysUnavailableError,
    Principal,
    Refusal,
    TokenError,
    TokenValidator,
    is_app_only,
    kind_of_validated_token,
)
from shared.settings import load_settings

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
OTHER_CLIENT = "9b1a7f0e-0c4c-4f55-9e39-3c8d2f6a1b2c"
APP_ROLE = "Tools.Execute.All"


@pytest.fixture(scope="module")
def validator(fake_entra: FakeEntra) -> TokenValidator:
    s = load_settings(settings_env(fake_entra))
    return TokenValidator(
        tenant_id=s.tenant_id,
        audience=s.client_id,
        issuer=s.issuer,
        allowed_client_ids=s.allowed_client_ids,
        required_scopes=s.required_scopes,
        keys=JwksCache(s.openid_configuration_url),
    )


def refused(validator: TokenValidator, token: str, refusal: Refusal = Refusal.INVALID_TOKEN) -> TokenError:
    with pytest.raises(TokenError) as caught:
        validator.validate(token)
    exc = caught.value
    assert exc.refusal is refusal, (exc.refusal, exc.detail)
    # Neither the caller-facing description nor the log-only detail ever carries the token or a piece of it.
    for text in (exc.description, exc.detail, str(exc), repr(exc)):
        assert token not in text
        for segment in token.split("."):
            if len(segment) >= 16:
                assert segment not in text
    assert len(exc.description) < 200
    return exc


# -- accepted tokens --------------------------------------------------------------------------------


def test_valid_token_gives_the_principal(validator: TokenValidator, fake_entra: FakeEntra, token: str) -> None:
    principal = validator.validate(token)
    assert isinstance(principal, Principal)
    assert principal.oid == fake_entra.user_oid("alice")
    assert principal.tenant_id == fake_entra.tenant_id
    assert principal.client_app_id == VSCODE_CLIENT_ID
    assert principal.preferred_username == "alice@contoso.example"
    assert principal.name == "Alice Example"
    assert principal.scopes == frozenset({"user_impersonation"})
    assert principal.roles == frozenset()
    assert not principal.is_app_only
    assert principal.kind == "user" and not principal.is_app
    with pytest.raises(TypeError):
        principal.claims["oid"] = "someone else"  # type: ignore[index]
    assert token not in repr(principal)


def test_other_allowed_client_and_extra_scopes(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    principal = validator.validate(
        fake_entra.mint(client_id=AZURE_CLI_CLIENT_ID, scopes="Files.Read user_impersonation",
                        claims={"roles": ["Admin", 3]})
    )
    assert principal.client_app_id == AZURE_CLI_CLIENT_ID
    assert principal.scopes == frozenset({"Files.Read", "user_impersonation"})
    assert principal.roles == frozenset({"Admin"})


def test_client_id_is_compared_case_insensitively(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    assert validator.validate(fake_entra.mint(client_id=VSCODE_CLIENT_ID.upper()))


@pytest.mark.parametrize(
    "cnf", [{"kid": "device-key-1"}, {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, {"xms_ksl": "sw"}]
)
def test_device_bound_token_with_cnf_is_accepted(validator: TokenValidator, fake_entra: FakeEntra,
                                                 cnf: dict[str, Any]) -> None:
    # VS Code may send tokens with a cnf claim as plain Bearer: they are validated normally.
    assert validator.validate(fake_entra.mint(claims={"cnf": cnf})).oid == fake_entra.user_oid("alice")


def test_clock_skew_within_leeway_is_accepted(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    now = int(time.time())
    margin = DEFAULT_LEEWAY_SECONDS // 2
    # Expired a minute ago by our clock, or issued a minute "in the future": clocks drift.
    assert validator.validate(fake_entra.mint(now=now - 3600 - margin, expires_in=3600))
    assert validator.validate(fake_entra.mint(not_before_offset=margin))
    assert validator.validate(fake_entra.mint(now=now + margin))  # iat in the future too


def test_valid_token_without_nbf_is_accepted(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    assert validator.validate(fake_entra.mint(remove=["nbf", "iat"]))


# -- lifetime -------------------------------------------------------------------------------------


def test_expired_token(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    now = int(time.time())
    token = fake_entra.mint(now=now - 7200, expires_in=3600)
    assert "expired" in refused(validator, token).description
    token = fake_entra.mint(now=now - 3600 - DEFAULT_LEEWAY_SECONDS - 30, expires_in=3600)
    assert "expired" in refused(validator, token).description


def test_not_yet_valid_token(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(not_before_offset=DEFAULT_LEEWAY_SECONDS + 60)
    assert "not valid yet" in refused(validator, token).description


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "tid"])
def test_required_claims(validator: TokenValidator, fake_entra: FakeEntra, claim: str) -> None:
    refused(validator, fake_entra.mint(remove=[claim]))


@pytest.mark.parametrize("claims", [{"exp": "tomorrow"}, {"nbf": "now"}, {"exp": None}])
def test_malformed_time_claims(validator: TokenValidator, fake_entra: FakeEntra, claims: dict[str, Any]) -> None:
    refused(validator, fake_entra.mint(claims=claims))


# -- audience, issuer, tenant, version ------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        GRAPH_APP_ID,  # a Graph token must never be accepted here
        "https://graph.microsoft.com",
        OTHER_CLIENT,
        "api://{client}",  # the v1 audience form
        "{client}/",
        "{CLIENT}",
        "",
        ["other"],
    ],
)
def test_wrong_audience(validator: TokenValidator, fake_entra: FakeEntra, aud: Any) -> None:
    if isinstance(aud, str):
        aud = aud.format(client=fake_entra.api_client_id, CLIENT=fake_entra.api_client_id.upper())
    refused(validator, fake_entra.mint(claims={"aud": aud}))


@pytest.mark.parametrize(
    "iss",
    [
        "https://login.microsoftonline.com/{tenant}/v2.0",  # right tenant, another authority host
        "{authority}/{other}/v2.0",
        "{authority}/{tenant}/v2.0/",
        "{authority}/common/v2.0",
        "{authority}/organizations/v2.0",
        "https://sts.windows.net/{tenant}/",  # v1 issuer
        "{authority}/{TENANT}/v2.0",
    ],
)
def test_other_issuer(validator: TokenValidator, fake_entra: FakeEntra, iss: str) -> None:
    value = iss.format(authority=fake_entra.authority, tenant=fake_entra.tenant_id, other=OTHER_TENANT,
                       TENANT=fake_entra.tenant_id.upper())
    refused(validator, fake_entra.mint(claims={"iss": value}))


def test_tid_mismatch(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    exc = refused(validator, fake_entra.mint(claims={"tid": OTHER_TENANT}))
    assert "tenant" in exc.description


def test_v1_token_is_refused(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    refused(validator, fake_entra.mint_v1())
    # Even a v1 token claiming the v2 issuer and our client ID as audience is refused for its version.
    exc = refused(validator, fake_entra.mint_v1(claims={"iss": fake_entra.issuer, "aud": fake_entra.api_client_id}))
    assert "v2.0" in exc.description
    refused(validator, fake_entra.mint(remove=["ver"]))


# -- client and scopes ---------------------------------------------------------------------------


def test_client_not_allowed(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    exc = refused(validator, fake_entra.mint(client_id=OTHER_CLIENT), Refusal.CLIENT_NOT_ALLOWED)
    assert OTHER_CLIENT not in exc.description  # the short description is generic
    refused(validator, fake_entra.mint(remove=["azp"]), Refusal.CLIENT_NOT_ALLOWED)
    refused(validator, fake_entra.mint_app_only(client_id=OTHER_CLIENT), Refusal.CLIENT_NOT_ALLOWED)


def test_app_only_token_needs_a_user(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    # Without MCP_APP_ROLES (the validator's default: no app roles), as before.
    exc = refused(validator, fake_entra.mint_app_only(), Refusal.INSUFFICIENT_SCOPE)
    assert "delegated" in exc.description and "MCP_APP_ROLES" in exc.detail
    refused(validator, fake_entra.mint_app_only([APP_ROLE]), Refusal.INSUFFICIENT_SCOPE)
    # idtyp=app wins even if the token carries an scp claim: it is never taken for a user.
    refused(validator, fake_entra.mint(claims={"idtyp": "app"}), Refusal.INSUFFICIENT_SCOPE)


# -- applications calling as themselves (MCP_APP_ROLES) ----------------------------------------------------------


@pytest.fixture(scope="module")
def app_validator(fake_entra: FakeEntra, validator: TokenValidator) -> TokenValidator:
    s = load_settings({**settings_env(fake_entra), "MCP_APP_ROLES": f"{APP_ROLE},Tools.Read.All"})
    return TokenValidator.from_settings(s, keys=validator._keys)


def test_app_only_token_with_an_admitted_role(app_validator: TokenValidator, fake_entra: FakeEntra) -> None:
    principal = app_validator.validate(fake_entra.mint_app_only([APP_ROLE, "Other"], client_id=AZURE_CLI_CLIENT_ID))
    assert principal.kind == "app" and principal.is_app and principal.is_app_only
    assert principal.oid == fake_entra.service_principal_oid(AZURE_CLI_CLIENT_ID)
    assert principal.client_app_id == AZURE_CLI_CLIENT_ID
    assert principal.roles == frozenset({APP_ROLE, "Other"}) and principal.scopes == frozenset()
    assert principal.name == "" and principal.preferred_username == ""
    assert app_validator.validate(fake_entra.mint_app_only(["Tools.Read.All"])).is_app


def test_app_only_token_without_an_admitted_role(app_validator: TokenValidator, fake_entra: FakeEntra) -> None:
    for roles in ([], ["Other"], [APP_ROLE.upper()], [f" {APP_ROLE}"]):
        exc = refused(app_validator, fake_entra.mint_app_only(roles), Refusal.INSUFFICIENT_SCOPE)
        assert exc.description == (
            f"the app-only token lacks an app role this server admits: {APP_ROLE} or Tools.Read.All"
        )
    refused(app_validator, fake_entra.mint_app_only(claims={"roles": APP_ROLE}), Refusal.INSUFFICIENT_SCOPE)
    refused(app_validator, fake_entra.mint_app_only(claims={"roles": {APP_ROLE: True}}), Refusal.INSUFFICIENT_SCOPE)


def test_app_only_token_from_a_client_not_allowed(app_validator: TokenValidator, fake_entra: FakeEntra) -> None:
    refused(app_validator, fake_entra.mint_app_only([APP_ROLE], client_id=OTHER_CLIENT), Refusal.CLIENT_NOT_ALLOWED)


def test_app_only_token_with_scp_is_refused(app_validator: TokenValidator, fake_entra: FakeEntra) -> None:
    exc = refused(app_validator, fake_entra.mint(claims={"idtyp": "app", "roles": [APP_ROLE]}),
                  Refusal.INSUFFICIENT_SCOPE)
    assert "delegated scopes" in exc.description


def test_app_only_token_without_idtyp_falls_back_to_oid_equal_sub(app_validator: TokenValidator,
                                                                 fake_entra: FakeEntra) -> None:
    assert app_validator.validate(fake_entra.mint_app_only([APP_ROLE], remove=["idtyp"])).kind == "app"
    # oid != sub (a user's pairwise sub): not an application, and without scp not a user either.
    token = fake_entra.mint_app_only([APP_ROLE], remove=["idtyp"], claims={"sub": fake_entra.pairwise_sub("x")})
    assert "scope" in refused(app_validator, token, Refusal.INSUFFICIENT_SCOPE).description


@pytest.mark.parametrize("claims", [{"roles": [APP_ROLE]}, {"roles": [APP_ROLE], "idtyp": "user"},
                                    {"roles": [APP_ROLE], "idtyp": "device"}])
def test_user_token_with_the_role_is_never_an_app(app_validator: TokenValidator, fake_entra: FakeEntra,
                                                  claims: dict[str, Any]) -> None:
    with_scp = app_validator.validate(fake_entra.mint(claims=claims))
    assert with_scp.kind == "user" and APP_ROLE in with_scp.roles
    refused(app_validator, fake_entra.mint(scopes=None, claims=claims), Refusal.INSUFFICIENT_SCOPE)


def test_delegated_tokens_are_unchanged_with_app_roles(app_validator: TokenValidator, fake_entra: FakeEntra) -> None:
    assert app_validator.validate(fake_entra.mint()).kind == "user"
    refused(app_validator, fake_entra.mint(scopes="Files.Read"), Refusal.INSUFFICIENT_SCOPE)
    refused(app_validator, fake_entra.mint(client_id=OTHER_CLIENT), Refusal.CLIENT_NOT_ALLOWED)


def test_many_app_roles_keep_the_description_short(fake_entra: FakeEntra, validator: TokenValidator) -> None:
    roles = [f"Role{i}.{'x' * 100}" for i in range(20)]
    many = TokenValidator(tenant_id=fake_entra.tenant_id, audience=fake_entra.api_client_id,
                          issuer=fake_entra.issuer, allowed_client_ids=[VSCODE_CLIENT_ID], required_scopes=[],
                          app_roles=roles, keys=validator._keys)
    exc = refused(many, fake_entra.mint_app_only(["x " * 50] * 30), Refusal.INSUFFICIENT_SCOPE)
    assert "Role0." in exc.description and "Role3." not in exc.description and "another" in exc.description
    assert len(exc.detail) < 400 and " x " not in exc.detail


@pytest.mark.parametrize(
    ("claims", "app"),
    [
        ({"idtyp": "app"}, True),
        ({"idtyp": "app", "scp": "x"}, True),  # refused by the validator, but never a user
        ({"idtyp": "user", "oid": "a", "sub": "a"}, False),
        ({"idtyp": "device"}, False),
        ({"idtyp": ["app"]}, False),
        ({"idtyp": None, "oid": "a", "sub": "a"}, True),  # a JSON null is as good as absent
        ({"oid": "a", "sub": "a"}, True),
        ({"oid": "a", "sub": "a", "scp": "x"}, False),
        ({"oid": "a", "sub": "a", "scp": ""}, False),
        ({"oid": "a", "sub": "b"}, False),
        ({"oid": "", "sub": ""}, False),
        ({"oid": 1, "sub": 1}, False),
        ({"roles": ["Tools.Execute.All"]}, False),
        ({}, False),
    ],
)
def test_is_app_only(claims: dict[str, Any], app: bool) -> None:
    assert is_app_only(claims) is app
    assert Principal(claims=claims).kind == ("app" if app else "user")


def test_kind_of_validated_token(fake_entra: FakeEntra) -> None:
    assert kind_of_validated_token(fake_entra.mint()) == "user"
    assert kind_of_validated_token(fake_entra.mint_app_only()) == "app"
    assert kind_of_validated_token(fake_entra.mint(scopes=None, claims={"roles": [APP_ROLE]})) == "user"
    for garbage in ("", "a.b", "a.b.c.d", "x.!!!.y", "x." + b64url(b"[1]") + ".y", "x." + b64url(b"{") + ".y"):
        assert kind_of_validated_token(garbage) is None


# -- what refusals log: encoded, so attacker-chosen text cannot pass for a log field --------------------------


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda f: f.mint(key=foreign_private_key(), headers={"kid": "x status=200 oid=admin"}), "kid="),
        (lambda f: f.mint(headers={"alg": "RS256 status=200 oid=admin"}), "alg="),
        (lambda f: f.mint(headers={"alg": {"a": "b status=200 oid=admin"}}), "alg="),
        (lambda f: f.mint(claims={"ver": "2.0 status=200 oid=admin"}), "ver="),
        (lambda f: f.mint(client_id="x status=200 oid=admin\nforged"), "client app "),
        (lambda f: f.mint_app_only(["x status=200 oid=admin"]), "roles="),
    ],
    ids=["kid", "alg", "alg-object", "ver", "client", "roles"],
)
def test_refusal_details_encode_what_the_token_chose(fake_entra: FakeEntra, validator: TokenValidator,
                                                    make: Callable[[FakeEntra], str], needle: str) -> None:
    s = load_settings({**settings_env(fake_entra), "MCP_APP_ROLES": APP_ROLE})
    strict = TokenValidator.from_settings(s, keys=validator._keys)
    with pytest.raises(TokenError) as caught:
        strict.validate(make(fake_entra))
    detail = caught.value.detail
    assert needle in detail, detail
    value = detail.split(needle, 1)[1].split(" ", 1)[0]
    assert re.fullmatch(r"[A-Za-z0-9._~%,-]+", value) and "%20status%3D200" in value, detail
    assert " oid=" not in detail and " status=" not in detail and "\n" not in detail and "'" not in detail


def test_log_value() -> None:
    assert log_value("aB3._~-") == "aB3._~-"
    assert log_value("x status=200 oid=admin") == "x%20status%3D200%20oid%3Dadmin"
    assert log_value(None) == "-" and log_value(42) == "42" and log_value("") == ""
    assert log_value(["a"]) == "%5B%27a%27%5D"
    assert log_value("a\r\nb\x00") == "a%0D%0Ab%00"
    assert log_value("\ud800") == "%ED%A0%80"  # a lone surrogate from a JSON escape: encoded, not an exception
    assert log_value("%41") == "%2541"  # unambiguous: an encoded-looking value is encoded again
    assert log_value("a" * 100) == "a" * 64 + "..."
    assert log_value("a" * 100, 10) == "a" * 10 + "..."
    cut = log_value("x" * 63 + " ")  # an escape that does not fit is dropped whole, never cut in half
    assert cut == "x" * 63 + "..."
    for text in ("é" * 50, " =" * 200, "\n" * 100, "\u2028" * 30):
        logged = log_value(text)
        assert len(logged) <= 64 + 3 and re.fullmatch(r"[A-Za-z0-9._~%-]+", logged), logged


@pytest.mark.parametrize("scopes", [None, "", "Files.Read", "user_impersonation2", "user_impersonation.all",
                                    "xuser_impersonation"])
def test_missing_scope(validator: TokenValidator, fake_entra: FakeEntra, scopes: str | None) -> None:
    refused(validator, fake_entra.mint(scopes=scopes), Refusal.INSUFFICIENT_SCOPE)


def test_every_required_scope_is_needed(fake_entra: FakeEntra, validator: TokenValidator) -> None:
    s = load_settings({**settings_env(fake_entra), "MCP_REQUIRED_SCOPES": "user_impersonation Files.Read"})
    strict = TokenValidator(tenant_id=s.tenant_id, audience=s.client_id, issuer=s.issuer,
                            allowed_client_ids=s.allowed_client_ids, required_scopes=s.required_scopes,
                            keys=validator._keys)
    refused(strict, fake_entra.mint(), Refusal.INSUFFICIENT_SCOPE)
    assert strict.validate(fake_entra.mint(scopes="Files.Read user_impersonation"))


# -- signatures and headers ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(validator: TokenValidator, fake_entra: FakeEntra, alg: str) -> None:
    token = fake_entra.mint(alg=alg)
    refused(validator, token)
    refused(validator, token.rsplit(".", 1)[0] + ".")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_pem(validator: TokenValidator, fake_entra: FakeEntra, alg: str) -> None:
    refused(validator, fake_entra.mint(alg=alg))  # default secret: the signing key's public PEM


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_asymmetric_algs_are_refused(validator: TokenValidator, fake_entra: FakeEntra, alg: str) -> None:
    # Really signed by the tenant key, but only RS256 is accepted.
    refused(validator, fake_entra.mint(alg=alg))


def test_alg_header_is_case_sensitive(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    refused(validator, fake_entra.mint(headers={"alg": "rs256"}))


@pytest.mark.parametrize("kid", ["unknown-kid", None, 42, "", "k" * 200, ["a"]])
def test_unusable_kid(validator: TokenValidator, fake_entra: FakeEntra, kid: Any) -> None:
    refused(validator, fake_entra.mint(headers={"kid": kid}))


def test_forged_key_with_a_trusted_kid(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    refused(validator, fake_entra.mint(key=foreign_private_key()))


def _jwk_of(fake: FakeEntra) -> dict[str, Any]:
    return fake.jwks()["keys"][0]


@pytest.mark.parametrize(
    "headers",
    [
        {"jku": "https://evil.example/keys"},
        {"x5u": "https://evil.example/cert.pem"},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
        {"jwk": "PUBLIC"},
    ],
)
def test_self_describing_key_headers_are_refused(validator: TokenValidator, fake_entra: FakeEntra,
                                                 headers: dict[str, Any]) -> None:
    if headers.get("jwk") == "PUBLIC":
        headers = {"jwk": _jwk_of(fake_entra)}
    # Even when correctly signed by the tenant key: a token that names its own key is suspicious.
    exc = refused(validator, fake_entra.mint(headers=headers))
    assert "own key" in exc.description


@pytest.mark.parametrize(
    "headers",
    [{"crit": ["exp"]}, {"crit": ["b64"], "b64": False}, {"crit": []}, {"crit": "b64"}, {"b64": False}],
)
def test_crit_and_b64_headers_are_refused(validator: TokenValidator, fake_entra: FakeEntra,
                                          headers: dict[str, Any]) -> None:
    # Correctly signed, but extensions this validator does not implement must not be half-honoured.
    refused(validator, fake_entra.mint(headers=headers))


def test_embedded_jwk_of_a_foreign_key_is_not_trusted(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    numbers = foreign_private_key().public_key().public_numbers()

    def uint(v: int) -> str:
        return b64url(v.to_bytes((v.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": uint(numbers.n), "e": uint(numbers.e)}
    refused(validator, fake_entra.mint(key=foreign_private_key(), headers={"jwk": jwk, "kid": None}))
    refused(validator, fake_entra.mint(key=foreign_private_key(), headers={"jwk": jwk}))


def _segments(token: str) -> list[str]:
    return token.split(".")


def _decode(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_tampered_payload(validator: TokenValidator, fake_entra: FakeEntra, token: str) -> None:
    header, payload, signature = _segments(token)
    claims = _decode(payload)
    for change in ({"oid": str(uuid.uuid4())}, {"scp": "user_impersonation Admin"}, {"exp": claims["exp"] + 86400}):
        forged_payload = b64url(json.dumps({**claims, **change}).encode())
        refused(validator, f"{header}.{forged_payload}.{signature}")


def test_tampered_header_or_signature(validator: TokenValidator, fake_entra: FakeEntra, token: str) -> None:
    header, payload, signature = _segments(token)
    new_header = b64url(json.dumps({**_decode(header), "typ": "at+jwt"}).encode())
    refused(validator, f"{new_header}.{payload}.{signature}")
    flipped = ("A" if signature[10] != "A" else "B")
    refused(validator, f"{header}.{payload}.{signature[:10]}{flipped}{signature[11:]}")
    other = fake_entra.mint(user="bob")
    refused(validator, f"{header}.{payload}.{_segments(other)[2]}")


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t[:-20],
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t + ".extra",
        lambda t: t.replace(".", "..", 1),
        lambda t: "." + t,
        lambda t: t[: len(t) // 2],
        lambda t: "x" + t,
        lambda t: t.swapcase(),
        lambda t: "",
        lambda t: "...",
        lambda t: "not a token at all",
        lambda t: "a.b.c",
        lambda t: "eyJhbGciOiJSUzI1NiJ9.e30.",
        lambda t: b64url(b"[1,2]") + ".e30.sig",
        lambda t: b64url(b'{"alg":"RS256","kid":"k"') + ".e30.sig",
        lambda t: "\u00e9\u00e9.\u00e9.\u00e9",
    ],
)
def test_truncated_or_garbage_tokens(validator: TokenValidator, token: str, make: Callable[[str], str]) -> None:
    bad = make(token)
    with pytest.raises(TokenError) as caught:
        validator.validate(bad)
    assert caught.value.refusal is Refusal.INVALID_TOKEN
    assert token not in caught.value.description and token not in caught.value.detail


def test_huge_token_is_refused_before_parsing(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    token = fake_entra.mint(claims={"groups": ["x" * 40] * 500})
    assert len(token) > MAX_TOKEN_LENGTH
    assert "too large" in refused(validator, token).description
    with pytest.raises(TokenError):
        validator.validate("A" * 10_000_000)


def test_non_json_payload_with_a_valid_signature(validator: TokenValidator, fake_entra: FakeEntra) -> None:
    # Sign a payload that is valid base64url but a JSON array, not an object.
    header = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": fake_entra.signing_kid}).encode())
    payload = b64url(b"[1, 2, 3]")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from fake_entra import rsa_key

    signature = rsa_key(0).sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    refused(validator, f"{header}.{payload}.{b64url(signature)}")


# -- keys unavailable ------------------------------------------------------------------------------


def test_keys_unavailable_is_neither_accepted_nor_blamed_on_the_token(fake_entra: FakeEntra, token: str) -> None:
    def down(url: str) -> dict[str, Any]:
        raise KeyFetchError("key endpoint down")

    s = load_settings(settings_env(fake_entra))
    cold = TokenValidator(tenant_id=s.tenant_id, audience=s.client_id, issuer=s.issuer,
                          allowed_client_ids=s.allowed_client_ids, required_scopes=s.required_scopes,
                          keys=JwksCache(s.openid_configuration_url, fetch_json=down))
    with pytest.raises(KeysUnavailableError):
        cold.validate(token)
    # Syntactic garbage is still refused without any key.
    with pytest.raises(TokenError):
        cold.validate("garbage")


# -- property: nothing but TokenError, and never an echo of the input -----------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80),
             min_size=3, max_size=3).map(".".join),
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jku", "crit", "b64", "x5c"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                              st.just("RS256")), max_size=5)
    .map(lambda h: b64url(json.dumps(h).encode()) + ".e30." + b64url(b"sig")),
))
def test_fuzzed_tokens_only_ever_raise_token_error(validator: TokenValidator, bad: str) -> None:
    try:
        validator.validate(bad)
    except TokenError as exc:
        if len(bad) >= 24:
            assert bad not in exc.description and bad not in exc.detail
    else:
        pytest.fail("a fuzzed token was accepted")
