"""Stdlib-only helpers for the cold-start contenders: an in-process ASGI POST and a small Entra JWT check.

The SDK and FastMCP apps are Starlette (ASGI) apps; calling them in-process, like the Functions host hands a
request to our function, keeps sockets and server start-up out of the comparison for every contender.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from typing import Any


async def asgi_post(app: Any, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    done = asyncio.Event()
    delivered = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


def tools_list_request(token: str, host: str = "127.0.0.1:8000") -> tuple[dict[str, str], bytes]:
    headers = {"Host": host, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}
    return headers, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()


def get_json(url: str) -> dict[str, Any]:
    # urllib trusts SSL_CERT_FILE through OpenSSL's default verify paths (the fake IdP's throwaway CA).
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def entra_env() -> dict[str, str]:
    tenant, client = os.environ["ENTRA_TENANT_ID"], os.environ["ENTRA_CLIENT_ID"]
    authority = os.environ["AZURE_AUTHORITY_HOST"]
    return {
        "tenant": tenant, "audience": client, "issuer": f"{authority}/{tenant}/v2.0",
        "discovery": f"{authority}/{tenant}/v2.0/.well-known/openid-configuration",
        "allowed": os.environ["ENTRA_ALLOWED_CLIENT_IDS"], "token": os.environ["BENCH_TOKEN"],
    }
