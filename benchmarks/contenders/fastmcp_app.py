"""Cold start, FastMCP (the `fastmcp` package): stateless JSON HTTP app with its JWTVerifier for Entra."""

import asyncio
import json
import sys
import time

started = time.perf_counter()
from _asgi import asgi_post, entra_env, get_json, tools_list_request  # noqa: E402
from fastmcp import FastMCP  # noqa: E402
from fastmcp.server.auth.providers.jwt import JWTVerifier  # noqa: E402

ENV = entra_env()
# FastMCP's verifier takes the key URL directly; discovering it is part of the work (as the others do).
verifier = JWTVerifier(jwks_uri=get_json(ENV["discovery"])["jwks_uri"], issuer=ENV["issuer"],
                       audience=ENV["audience"], algorithm="RS256", required_scopes=["user_impersonation"])
server = FastMCP("fastmcp-bench", auth=verifier)


@server.tool
def whoami() -> dict:
    """Return the signed-in caller's identity."""
    return {}


app = server.http_app(json_response=True, stateless_http=True)
imported = time.perf_counter()


async def main() -> tuple[int, bytes]:
    async with app.router.lifespan_context(app):
        headers, body = tools_list_request(ENV["token"])
        return await asgi_post(app, "/mcp", headers, body)


status, payload = asyncio.run(main())
answered = time.perf_counter()
tools = [t["name"] for t in json.loads(payload)["result"]["tools"]] if status == 200 else payload.decode()[:300]
print(json.dumps({"status": status, "tools": tools, "import_ms": (imported - started) * 1000,
                  "first_request_ms": (answered - imported) * 1000}))
sys.exit(0 if status == 200 else 1)
