"""Agents and daemons as callers: app-only tokens admitted by app role (MCP_APP_ROLES), end to end.

Microsoft's guide for MCP servers on Entra has agents (Entra Agent ID, Foundry agents, daemons) call as themselves:
a client-credentials token for ``<app ID URI>/.default``, with an app role assigned to the agent's identity in its
``roles`` claim. Every request here goes through the Functions adapter and the whole pipeline, like
``test_endpoint``; tokens are real RS256 tokens from the fake tenant. What is proved:

* an app-only token from an allowed client with one of MCP_APP_ROLES is served, and tools see an application;
* without such a role it gets 403 ``insufficient_scope`` naming the roles; from a foreign client 403 without a
  challenge; with MCP_APP_ROLES unset, as before, every app-only token is refused;
* delegated tokens are unchanged, and a user token is never taken for an app because it carries ``roles``;
* per-tool ``roles=[...]`` work for both kinds of caller;
* on-behalf-of refuses applications with a tool error and never calls the token endpoint;
* the PRM and the challenges advertise only the delegated scopes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import ALLOWED_CLIENT_IDS, settings_env
from fake_entra import AZURE_CLI_CLIENT_ID, VSCODE_CLIENT_ID, FakeEntra
from fake_graph import FakeGraph
from shared.downstream.obo import APP_CALLER_MESSAGE, OnBehalfOfService
from shared.entra.tokens import TokenValidator
from shared.features.tools import ToolContext, ToolRegistry
from shared.graph import get as graph_get
from shared.http.pipeline import McpServer
from shared.settings import load_settings
from support import (
    BASE,
    OTHER_CLIENT,
    PRM_PATH,
    Handler,
    Reply,
    capture_all_logs,
    handler_for,
    legacy,
    request,
    request_log_lines,
    rpc,
)
from tools import tools as forker_tools

ROLE = "Tools.Execute.All"
SECRET = "app-callers-obo-secret-0123456789"
# An agent identity's application (client) ID: a confidential client, allowed alongside the user-facing clients.
AGENT_CLIENT = "5d7c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
AGENT_ENV = {"ENTRA_ALLOWED_CLIENT_IDS": f"{ALLOWED_CLIENT_IDS},{AGENT_CLIENT}", "MCP_APP_ROLES": ROLE}


def app_server(fake: FakeEntra, registry: ToolRegistry = forker_tools, **env: str) -> McpServer:
    """A server with MCP_APP_ROLES (and the agent's client allowed), its validator built from the settings."""
    settings = load_settings({**settings_env(fake), **AGENT_ENV, **env})
    return McpServer(settings, registry, validator=TokenValidator.from_settings(settings))


@pytest.fixture(scope="module")
def agents(fake_entra: FakeEntra) -> Handler:
    return handler_for(app_server(fake_entra))


def agent_token(fake: FakeEntra, roles: tuple[str, ...] = (ROLE,), **kwargs: Any) -> str:
    return fake.mint_app_only(roles=roles, client_id=kwargs.pop("client_id", AGENT_CLIENT), **kwargs)


def whoami(token: str, handler: Handler) -> Reply:
    return legacy(token, "tools/call", {"name": "whoami", "arguments": {}}, handler=handler)


def structured(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    result = reply.json["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]


def tool_error(reply: Reply) -> str:
    assert reply.status == 200, (reply.status, reply.body[:300])
    result = reply.json["result"]
    assert result.get("isError") is True, result
    return result["content"][0]["text"]


def assert_insufficient_scope(reply: Reply, fake: FakeEntra, *, names: str | None = None) -> None:
    assert reply.status == 403, (reply.status, reply.body)
    challenge = reply.challenge
    assert challenge["error"] == "insufficient_scope" and reply.json["error"] == "insufficient_scope"
    assert challenge["resource_metadata"] == f"{BASE}{PRM_PATH}"
    # The challenge asks for the delegated scope only: an app role is never offered as a scope to request.
    assert challenge["scope"] == f"api://{fake.api_client_id}/user_impersonation"
    if names is not None:
        assert names in challenge["error_description"], challenge


# -- admitted: an app-only token from an allowed client with one of MCP_APP_ROLES -------------------------------


def test_agent_with_the_role_is_served_and_seen_as_an_application(fake_entra: FakeEntra, agents: Handler) -> None:
    token = agent_token(fake_entra, roles=(ROLE, "Other.Role"))
    assert legacy(token, "tools/list", handler=agents).status == 200

    identity = structured(whoami(token, agents))

    assert identity == {
        "name": "",
        "preferred_username": "",
        "oid": fake_entra.service_principal_oid(AGENT_CLIENT),  # the agent's service principal
        "tid": fake_entra.tenant_id,
        "scopes": [],
        "client_app_id": AGENT_CLIENT,
        "kind": "app",
        "roles": ["Other.Role", ROLE],
    }


def test_any_one_of_several_roles_admits(fake_entra: FakeEntra) -> None:
    handler = handler_for(app_server(fake_entra, MCP_APP_ROLES=f"Tools.Read.All, {ROLE}"))
    assert structured(whoami(agent_token(fake_entra, roles=("Tools.Read.All",)), handler))["kind"] == "app"
    assert structured(whoami(agent_token(fake_entra, roles=(ROLE,)), handler))["kind"] == "app"


def test_app_only_token_without_idtyp_is_recognised_by_oid_equal_sub(fake_entra: FakeEntra, agents: Handler) -> None:
    # Microsoft's documented fallback: in an app-only token oid == sub (both the service principal).
    token = agent_token(fake_entra, remove=["idtyp"])
    assert structured(whoami(token, agents))["kind"] == "app"


def test_the_request_line_names_the_agent(fake_entra: FakeEntra, agents: Handler) -> None:
    with capture_all_logs() as logs:
        assert whoami(agent_token(fake_entra), agents).status == 200
    [line] = request_log_lines(logs.records)
    assert line.caller_oid == fake_entra.service_principal_oid(AGENT_CLIENT)  # type: ignore[attr-defined]
    assert line.caller_client_app == AGENT_CLIENT  # type: ignore[attr-defined]


# -- refused app-only tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", [(), ("Tools.Invoke",), ("tools.execute.all",), (ROLE + "2",)],
                         ids=["no-roles", "other-role", "role-in-other-case", "role-prefix"])
def test_agent_without_the_role_gets_403_naming_the_role(fake_entra: FakeEntra, agents: Handler,
                                                        roles: tuple[str, ...]) -> None:
    reply = legacy(agent_token(fake_entra, roles=roles), "tools/list", handler=agents)
    assert_insufficient_scope(reply, fake_entra, names=ROLE)
    assert "app role" in reply.json["error_description"]


def test_many_admitting_roles_keep_the_description_short(fake_entra: FakeEntra) -> None:
    roles = ",".join(f"Role.Number{i}.{'x' * 60}" for i in range(10))
    handler = handler_for(app_server(fake_entra, MCP_APP_ROLES=roles))
    reply = legacy(agent_token(fake_entra, roles=("Nope",)), "ping", handler=handler)
    assert_insufficient_scope(reply, fake_entra, names="Role.Number0.")
    assert "Role.Number9." not in reply.json["error_description"] and len(reply.body) < 600


def test_agent_from_a_client_not_allowed_gets_403_without_a_challenge(fake_entra: FakeEntra, agents: Handler) -> None:
    reply = legacy(agent_token(fake_entra, client_id=OTHER_CLIENT), "tools/list", handler=agents)
    assert reply.status == 403 and reply.json["error"] == "access_denied"
    assert "www-authenticate" not in reply.headers


def test_without_app_roles_every_app_only_token_is_refused_as_before(fake_entra: FakeEntra) -> None:
    # The registered function: MCP_APP_ROLES unset.
    for token in (agent_token(fake_entra, client_id=VSCODE_CLIENT_ID), fake_entra.mint_app_only()):
        reply = request(body=rpc("tools/list"), headers={"Authorization": f"Bearer {token}"})
        assert_insufficient_scope(reply, fake_entra)
        assert "delegated" in reply.json["error_description"]


def test_an_app_only_token_with_delegated_scopes_is_refused(fake_entra: FakeEntra, agents: Handler) -> None:
    # idtyp=app and scp together: not a token Entra issues; it is neither admitted as an app nor as a user.
    token = fake_entra.mint(client_id=AGENT_CLIENT, claims={"idtyp": "app", "roles": [ROLE]})
    assert_insufficient_scope(legacy(token, "tools/list", handler=agents), fake_entra)


def test_the_pipeline_builds_its_validator_with_the_app_roles(fake_entra: FakeEntra) -> None:
    # McpServer without an explicit validator (what function_app uses) must honour MCP_APP_ROLES too.
    settings = load_settings({**settings_env(fake_entra), **AGENT_ENV})
    handler = handler_for(McpServer(settings, forker_tools))
    assert structured(whoami(agent_token(fake_entra), handler))["kind"] == "app"


# -- delegated tokens are unchanged; a user token is never an app token ------------------------------------------


def test_user_token_is_still_a_user(fake_entra: FakeEntra, agents: Handler) -> None:
    identity = structured(whoami(fake_entra.mint(user="alice"), agents))
    assert identity["kind"] == "user" and identity["oid"] == fake_entra.user_oid("alice")
    assert identity["scopes"] == ["user_impersonation"] and identity["roles"] == []
    assert identity["preferred_username"] == "alice@contoso.example"


def test_user_with_an_app_role_assignment_stays_a_user(fake_entra: FakeEntra, agents: Handler) -> None:
    # A user assigned the very role MCP_APP_ROLES names: roles on a user token are the user's own assignments.
    identity = structured(whoami(fake_entra.mint(user="bob", claims={"roles": [ROLE]}), agents))
    assert identity["kind"] == "user" and identity["roles"] == [ROLE]


@pytest.mark.parametrize("claims", [{"roles": [ROLE]}, {"roles": [ROLE], "idtyp": "user"}],
                         ids=["no-idtyp", "idtyp-user"])
def test_user_token_with_the_role_but_no_scp_is_not_admitted_as_an_app(fake_entra: FakeEntra, agents: Handler,
                                                                       claims: dict[str, Any]) -> None:
    # No scp, but a user (sub is pairwise, not the oid; or idtyp says so): it needs the delegated scope.
    for client in (VSCODE_CLIENT_ID, AGENT_CLIENT):
        token = fake_entra.mint(scopes=None, client_id=client, claims=claims)
        reply = legacy(token, "tools/list", handler=agents)
        assert_insufficient_scope(reply, fake_entra)
        assert "scope" in reply.json["error_description"]


def test_user_token_claiming_oid_equal_sub_with_idtyp_user_is_a_user(fake_entra: FakeEntra, agents: Handler) -> None:
    oid = fake_entra.user_oid("carol")
    token = fake_entra.mint(user="carol", claims={"idtyp": "user", "sub": oid, "roles": [ROLE]})
    assert structured(whoami(token, agents))["kind"] == "user"


# -- per-tool roles for both kinds of caller ----------------------------------------------------------------------

role_tools = ToolRegistry()


@role_tools.tool(roles=["Tools.Admin"])
def admin_task(ctx: ToolContext) -> str:
    """Needs the Tools.Admin app role, whoever calls."""
    return f"done for {ctx.caller.kind} {ctx.caller.oid}"


@role_tools.tool(scopes=["Files.Read"])
def read_files() -> str:
    """Needs a delegated scope: only users can hold it."""
    return "files"


@role_tools.tool
def me(ctx: ToolContext) -> dict[str, Any]:
    """The caller, as tools see it."""
    return {"kind": ctx.caller.kind, "is_app": ctx.caller.is_app, "roles": sorted(ctx.caller.roles)}


@pytest.fixture(scope="module")
def role_server(fake_entra: FakeEntra) -> Handler:
    return handler_for(app_server(fake_entra, role_tools))


def call(token: str, name: str, handler: Handler) -> Reply:
    return legacy(token, "tools/call", {"name": name, "arguments": {}}, handler=handler)


def test_tool_role_admits_an_agent_that_holds_it(fake_entra: FakeEntra, role_server: Handler) -> None:
    reply = call(agent_token(fake_entra, roles=(ROLE, "Tools.Admin")), "admin_task", role_server)
    assert reply.status == 200 and not reply.json["result"].get("isError")
    text = reply.json["result"]["content"][0]["text"]
    assert text == f"done for app {fake_entra.service_principal_oid(AGENT_CLIENT)}"


def test_tool_role_refuses_an_agent_without_it(fake_entra: FakeEntra, role_server: Handler) -> None:
    reply = call(agent_token(fake_entra), "admin_task", role_server)
    assert reply.status == 403 and reply.challenge["error"] == "insufficient_scope"
    assert "app role Tools.Admin" in reply.challenge["error_description"]


def test_tool_role_works_for_users_too(fake_entra: FakeEntra, role_server: Handler) -> None:
    assigned = fake_entra.mint(user="dave", claims={"roles": ["Tools.Admin"]})
    assert call(assigned, "admin_task", role_server).json["result"]["content"][0]["text"].startswith("done for user")
    reply = call(fake_entra.mint(user="erin"), "admin_task", role_server)
    assert reply.status == 403 and "app role Tools.Admin" in reply.challenge["error_description"]


def test_a_tool_scope_is_never_met_by_an_agent(fake_entra: FakeEntra, role_server: Handler) -> None:
    reply = call(agent_token(fake_entra, roles=(ROLE, "Files.Read")), "read_files", role_server)
    assert reply.status == 403 and "scope Files.Read" in reply.challenge["error_description"]
    assert call(fake_entra.mint(scopes="user_impersonation Files.Read"), "read_files", role_server).status == 200


def test_tools_see_the_kind_of_caller(fake_entra: FakeEntra, role_server: Handler) -> None:
    agent = call(agent_token(fake_entra), "me", role_server).json["result"]["structuredContent"]
    user = call(fake_entra.mint(), "me", role_server).json["result"]["structuredContent"]
    assert agent == {"kind": "app", "is_app": True, "roles": [ROLE]}
    assert user == {"kind": "user", "is_app": False, "roles": []}


# -- on-behalf-of is for users only --------------------------------------------------------------------------------

obo_tools = ToolRegistry()


@obo_tools.tool
def profile(ctx: ToolContext) -> dict[str, Any]:
    """Graph as the caller, through the Graph helper."""
    return graph_get(ctx, "/me")


@obo_tools.tool
def raw_token(ctx: ToolContext) -> str:
    """Asks the downstream handle directly, bypassing ToolContext.downstream_token."""
    assert ctx.downstream is not None
    return "got one" if ctx.downstream.get_token("https://graph.microsoft.com/User.Read") else "none"


@obo_tools.tool
async def async_token(ctx: ToolContext) -> str:
    """The async path."""
    await asyncio.sleep(0)
    return "got one" if await ctx.downstream_token_async("https://graph.microsoft.com/User.Read") else "none"


@pytest.fixture
def graph(entra: FakeEntra) -> Iterator[FakeGraph]:
    with FakeGraph(entra) as fake:
        yield fake


def obo_handler(entra: FakeEntra, graph: FakeGraph, registry: ToolRegistry) -> Handler:
    settings = load_settings({**settings_env(entra), **AGENT_ENV, "GRAPH_API_BASE_URL": graph.base_url,
                              "OBO_CLIENT_SECRET": SECRET})
    service = OnBehalfOfService.from_settings(settings)
    return handler_for(McpServer(settings, registry, validator=TokenValidator.from_settings(settings),
                                 downstream=service.for_assertion))


@pytest.mark.parametrize("name", ["profile", "raw_token", "async_token"])
def test_on_behalf_of_refuses_an_agent_without_calling_entra(entra: FakeEntra, graph: FakeGraph, name: str) -> None:
    handler = obo_handler(entra, graph, obo_tools)
    with capture_all_logs() as logs:
        text = tool_error(call(agent_token(entra), name, handler))
    assert text == APP_CALLER_MESSAGE
    assert entra.obo_calls == 0 and entra.token_requests == [] and graph.paths == []
    assert any("On-behalf-of refused" in r.getMessage() for r in logs.records)


def test_the_sample_profile_tool_refuses_an_agent_and_still_serves_users(entra: FakeEntra, graph: FakeGraph) -> None:
    handler = obo_handler(entra, graph, forker_tools)
    assert tool_error(call(agent_token(entra), "get_my_profile", handler)) == APP_CALLER_MESSAGE
    assert entra.obo_calls == 0

    profile = structured(call(entra.mint(user="alice"), "get_my_profile", handler))
    assert profile["user_principal_name"] == "alice@contoso.example"
    assert entra.obo_calls == 1


def test_a_user_with_the_app_role_still_gets_on_behalf_of(entra: FakeEntra, graph: FakeGraph) -> None:
    handler = obo_handler(entra, graph, obo_tools)
    assert structured(call(entra.mint(user="bob", claims={"roles": [ROLE]}), "profile", handler))
    assert entra.obo_calls == 1


# -- discovery advertises delegated scopes only --------------------------------------------------------------------


def test_prm_and_challenges_never_advertise_app_roles(fake_entra: FakeEntra) -> None:
    server = app_server(fake_entra)
    full_scope = f"api://{fake_entra.api_client_id}/user_impersonation"
    for root in (False, True):
        document = request(PRM_PATH if not root else "/.well-known/oauth-protected-resource", method="GET",
                           handler=handler_for(server, root=root, metadata=True)).json
        assert document["scopes_supported"] == [full_scope], document
        assert ROLE not in str(document)
    bare = request(body=rpc("tools/list"), handler=handler_for(server))
    assert bare.status == 401 and bare.challenge["scope"] == full_scope
    assert ROLE not in bare.headers["www-authenticate"]


def test_an_azure_cli_user_token_is_unaffected(fake_entra: FakeEntra, agents: Handler) -> None:
    identity = structured(whoami(fake_entra.mint(client_id=AZURE_CLI_CLIENT_ID, user="frank"), agents))
    assert identity["kind"] == "user" and identity["client_app_id"] == AZURE_CLI_CLIENT_ID
