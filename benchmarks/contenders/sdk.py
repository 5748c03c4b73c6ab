"""Cold start, the official MCP Python SDK (mcp 2.3.0): MCPServer, stateless JSON, an equivalent Entra JWT verifier."""

import asyncio
import json
import sys
import time

started = time.perf_counter()
import jwt  # noqa: E402
from _asgi import asgi_post, entra_env, get_json, tools_list_request  # noqa: E402
from mcp.server.auth.provider import AccessToken  # noqa: E402
from mcp.server.auth.settings import AuthSettings  # noqa: E402
from mcp.server.mcpserver import Context, MCPServer  # noqa: E402

ENV = entra_env()


class EntraVerifier:
    """The same checks as shared/tokens.py: RS256, tenant keys by kid (discovery + JWKS), iss, aud, exp, tid,
    azp in the allow-list, the required scope."""

    def __init__(self) -> None:
        self._keys: dict[str, object] | None = None

    def _key(self, kid: str) -> object | None:
        if self._keys is None:
            jwks = get_json(get_json(ENV["discovery"])["jwks_uri"])
            self._keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
        return self._keys.get(kid)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self._key(jwt.get_unverified_header(token).get("kid", ""))
            if key is None:
                return None
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=ENV["audience"], issuer=ENV["issuer"],
                                leeway=120, options={"require": ["exp", "iss", "aud", "tid"]})
        except jwt.PyJWTError:
            return None
        scopes = claims.get("scp", "").split()
        if claims.get("tid") != ENV["tenant"] or claims.get("azp") not in ENV["allowed"].split(","):
            return None
        if "user_impersonation" not in scopes:
            return None
        return AccessToken(token=token, client_id=claims["azp"], scopes=scopes, expires_at=claims["exp"],
                           claims=claims)


server = MCPServer(
    "sdk-bench", token_verifier=EntraVerifier(),
    auth=AuthSettings(issuer_url=ENV["issuer"], resource_server_url="http://127.0.0.1:8000/mcp",
                      required_scopes=["user_impersonation"]),
)


@server.tool()
def whoami(ctx: Context) -> dict:
    """Return the signed-in caller's identity."""
    return {}


app = server.streamable_http_app(json_response=True, stateless_http=True)
imported = time.perf_counter()


async def main() -> tuple[int, bytes]:
    async with app.router.lifespan_context(app):
        headers, body = tools_list_request(ENV["token"])
        return await asgi_post(app, "/mcp", headers, body)


status, payload = asyncio.run(main())
answered = time.perf_counter()
tools = [t["name"] for t in json.loads(payload)["result"]["tools"]] if status == 200 else payload.decode()[:200]
print(json.dumps({"status": status, "tools": tools, "import_ms": (imported - started) * 1000,
                  "first_request_ms": (answered - imported) * 1000}))
sys.exit(0 if status == 200 else 1)
