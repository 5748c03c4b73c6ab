"""Concurrency: many threads drive the handler at once as different users, and nothing leaks between them.

The Functions Python worker runs sync functions on a thread pool, so one process serves many callers at once.
Nothing about one caller may reach another: not claims (whoami answers each caller's own ``oid``), not the caller
a tool sees mid-call, not on-behalf-of tokens; and shared state (key cache, registries, OBO cache) must not race.
``test_obo.py`` already proves per-user OBO token isolation and single flight at the OBO API level; the OBO test
here drives the full handler with mixed tools and users.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest

from fake_entra import FakeEntra, foreign_private_key
from fake_graph import FakeGraph
from shared.downstream.obo import OnBehalfOfService
from shared.downstream.retry import RetryBudget
from shared.features.tools import ToolContext, ToolRegistry
from shared.http.pipeline import McpServer
from support import (
    MCP_FUNCTION,
    Handler,
    as_function,
    legacy,
    private_server,
    to_reply,
    whoami_request,
)
from test_obo import obo_settings
from tools import tools as forker_tools

USERS = [f"user{i:02d}" for i in range(24)]
THREADS = 32


def run_all(jobs: list[Any], fn: Any, threads: int = THREADS) -> list[Any]:
    """Run ``fn`` over ``jobs`` on ``threads`` threads released together by a barrier (maximal overlap)."""
    barrier = threading.Barrier(threads)

    def worker(chunk: list[Any]) -> list[Any]:
        barrier.wait(timeout=30)
        return [fn(job) for job in chunk]

    chunks = [jobs[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [result for part in pool.map(worker, chunks) for result in part]


def test_whoami_under_load_answers_each_caller_with_its_own_identity(fake_entra: FakeEntra) -> None:
    tokens = {user: fake_entra.mint(user=user) for user in USERS}
    jobs = [(USERS[i % len(USERS)], i, i % 2 == 0) for i in range(960)]

    def whoami(job: tuple[str, int, bool]) -> tuple[str, int, dict[str, Any]]:
        user, i, modern_protocol = job
        reply = to_reply(MCP_FUNCTION(whoami_request(tokens[user], id=i, modern_protocol=modern_protocol)))
        assert reply.status == 200, reply.body
        message = reply.json
        assert message["id"] == i  # answers are not swapped between concurrent requests either
        return user, i, message["result"]["structuredContent"]

    for user, _i, identity in run_all(jobs, whoami):
        assert identity["oid"] == fake_entra.user_oid(user)
        assert identity["preferred_username"] == f"{user}@contoso.example"
        assert identity["name"] == f"{user.capitalize()} Example"


def test_refusals_and_successes_interleaved_do_not_contaminate_each_other(fake_entra: FakeEntra) -> None:
    good = {user: fake_entra.mint(user=user) for user in USERS[:8]}
    bad = {
        "forged": fake_entra.mint(key=foreign_private_key(), user="mallory"),
        "expired": fake_entra.mint(user="mallory", expires_in=-3600),
        "scope": fake_entra.mint(user="mallory", scopes="Files.Read"),
        "client": fake_entra.mint(user="mallory", client_id="9b1a7f0e-0c4c-4f55-9e39-3c8d2f6a1b2c"),
    }
    jobs = [(kind, name) for _ in range(40) for kind, names in (("good", good), ("bad", bad)) for name in names]

    def go(job: tuple[str, str]) -> tuple[str, str, int, Any]:
        kind, name = job
        token = good[name] if kind == "good" else bad[name]
        reply = to_reply(MCP_FUNCTION(whoami_request(token)))
        return kind, name, reply.status, reply.json

    for kind, name, status, body in run_all(jobs, go):
        if kind == "good":
            assert status == 200 and body["result"]["structuredContent"]["oid"] == fake_entra.user_oid(name)
        else:
            assert status in (401, 403), (name, status)
            assert "result" not in body and fake_entra.user_oid("mallory") not in str(body)


# -- the caller a tool sees is the request's own, even while other requests run ----------------------------------

slow_tools = ToolRegistry()


@slow_tools.tool
def slow_whoami(ctx: ToolContext) -> str:
    """Reads the caller, yields the CPU, reads it again: a shared 'current caller' would show up here."""
    before = ctx.caller.claims["oid"]
    time.sleep(0.002)
    after = ctx.caller.claims["oid"]
    return f"{before}|{after}"


@slow_tools.tool
async def slow_whoami_async(ctx: ToolContext) -> str:
    """The same for an async tool."""
    before = ctx.caller.claims["oid"]
    await asyncio.sleep(0.002)
    return f"{before}|{ctx.caller.claims['oid']}"


@pytest.fixture(scope="module")
def slow_handler(fake_entra: FakeEntra) -> Handler:
    server, _ = private_server(fake_entra, slow_tools)
    return as_function(server)


@pytest.mark.parametrize("tool", ["slow_whoami", "slow_whoami_async"])
def test_the_tool_context_is_per_request(fake_entra: FakeEntra, slow_handler: Handler, tool: str) -> None:
    tokens = {user: fake_entra.mint(user=user) for user in USERS}

    def call(i: int) -> tuple[str, str]:
        user = USERS[i % len(USERS)]
        reply = legacy(tokens[user], "tools/call", {"name": tool, "arguments": {}}, id=i, handler=slow_handler)
        assert reply.status == 200, reply.body
        return user, reply.json["result"]["content"][0]["text"]

    for user, text in run_all(list(range(480)), call):
        oid = fake_entra.user_oid(user)
        assert text == f"{oid}|{oid}"


# -- shared state: the key cache on a cold start, the registries ---------------------------------------------------


def test_cold_start_stampede_fetches_keys_once_and_serves_everyone() -> None:
    with FakeEntra() as idp:
        server, keys = private_server(idp)
        handler = as_function(server)
        tokens = {user: idp.mint(user=user) for user in USERS}

        def first(i: int) -> tuple[str, int, dict[str, Any]]:
            user = USERS[i % len(USERS)]
            reply = to_reply(handler(whoami_request(tokens[user], id=i)))
            return user, reply.status, reply.json

        results = run_all(list(range(THREADS * 4)), first)
        assert [status for _, status, _ in results] == [200] * len(results)
        for user, _, body in results:
            assert body["result"]["structuredContent"]["oid"] == idp.user_oid(user)
        assert (idp.discovery_fetches, idp.jwks_fetches, keys.fetch_count) == (1, 1, 1)


def test_listing_is_stable_under_concurrency(fake_entra: FakeEntra) -> None:
    token = fake_entra.mint()
    expected = legacy(token, "tools/list").body

    def listing(_: int) -> bytes:
        return legacy(token, "tools/list").body

    assert set(run_all(list(range(256)), listing)) == {expected}


# -- on-behalf-of through the whole handler ---------------------------------------------------------------------------


@pytest.fixture
def graph(entra: FakeEntra) -> Iterator[FakeGraph]:
    with FakeGraph(entra) as fake:
        yield fake


def test_obo_tokens_never_cross_users_through_the_handler(entra: FakeEntra, graph: FakeGraph) -> None:
    settings = obo_settings(entra, graph)
    service = OnBehalfOfService.from_settings(settings, budget=RetryBudget(total_seconds=10, read_timeout=5))
    handler = as_function(McpServer(settings, forker_tools, downstream=service.for_assertion))
    users = USERS[:10]
    tokens = {user: entra.mint(user=user) for user in users}
    jobs = [(users[i % len(users)], "get_my_profile" if i % 3 else "whoami", i) for i in range(300)]

    def go(job: tuple[str, str, int]) -> tuple[str, str, dict[str, Any]]:
        user, tool, i = job
        reply = legacy(tokens[user], "tools/call", {"name": tool, "arguments": {}}, id=i, handler=handler)
        assert reply.status == 200, reply.body
        result = reply.json["result"]
        assert not result.get("isError"), result
        return user, tool, result["structuredContent"]

    for user, tool, content in run_all(jobs, go, threads=20):
        if tool == "whoami":
            assert content["oid"] == entra.user_oid(user)
        else:
            assert content["user_principal_name"] == f"{user}@contoso.example"
    # One exchange per user, each with that user's own assertion, and every token Graph saw belongs to a
    # user who really called: the downstream token's oid matches an assertion's oid.
    assert entra.obo_calls == len(users)
    assert sorted(form["assertion"] for form in entra.token_requests) == sorted(tokens.values())
    issued_to = {jwt.decode(t, options={"verify_signature": False})["oid"] for t in entra.issued_obo_tokens}
    assert issued_to == {entra.user_oid(user) for user in users}
    seen = [a.removeprefix("Bearer ") for a in graph.authorizations]
    assert set(seen) <= set(entra.issued_obo_tokens) and not set(seen) & set(tokens.values())
