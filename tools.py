"""Your MCP tools live here.

To add a tool: write a function, decorate it with ``@tools.tool``, type-hint every parameter and the
return value, and give it a docstring - the model reads the docstring (and an ``Args:`` section) to
decide when and how to call it. Add a ``ctx: ToolContext`` parameter to see who is calling.
Raise ``ToolError("...")`` to tell the model what went wrong.
"""

from typing import Literal, TypedDict

from shared import graph
from shared.tools import ToolAnnotations, ToolContext, ToolRegistry

tools = ToolRegistry()


class Identity(TypedDict):
    name: str
    preferred_username: str
    oid: str
    tid: str
    scopes: list[str]
    client_app_id: str
    kind: Literal["user", "app"]
    roles: list[str]


@tools.tool(annotations=ToolAnnotations(title="Who am I", read_only_hint=True, open_world_hint=False))
def whoami(ctx: ToolContext) -> Identity:
    """Return the caller's identity as verified from the access token: a signed-in user (kind "user"), or an
    application such as an agent calling as itself (kind "app": no name or scopes, oid is its service principal)."""
    claims = ctx.caller.claims
    return Identity(
        name=claims.get("name", ""),
        preferred_username=claims.get("preferred_username", ""),
        oid=ctx.caller.oid,
        tid=claims.get("tid", ""),
        scopes=sorted(ctx.caller.scopes),
        client_app_id=ctx.caller.client_app_id,
        kind=ctx.caller.kind,
        roles=sorted(ctx.caller.roles),
    )


class Profile(TypedDict):
    display_name: str
    user_principal_name: str
    mail: str | None
    job_title: str | None
    office_location: str | None


@tools.tool(annotations=ToolAnnotations(title="My profile", read_only_hint=True, open_world_hint=True))
def get_my_profile(ctx: ToolContext) -> Profile:
    """Return the signed-in user's Microsoft 365 profile (name, email, job title, office) from Microsoft Graph."""
    # On behalf of the caller: Graph sees a token this server obtained for User.Read, never the caller's own.
    me = graph.get(ctx, "/me", scopes=["User.Read"],
                   params={"$select": "displayName,userPrincipalName,mail,jobTitle,officeLocation"})
    return Profile(
        display_name=me.get("displayName") or "",
        user_principal_name=me.get("userPrincipalName") or "",
        mail=me.get("mail"),
        job_title=me.get("jobTitle"),
        office_location=me.get("officeLocation"),
    )
