"""A loopback HTTP server that serves a ``func.FunctionApp`` the way the Functions host does.

Core Tools cannot be installed on CI machines, so this stands in for ``func start``:
routes come from the app's registered HTTP triggers (``routePrefix`` is ``""`` in
host.json), a method no function registers is answered 404 like the host does, and each
request reaches the user function as a real ``func.HttpRequest``. Real MCP clients can
then talk to the app over a socket.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

UserFunction = Callable[[func.HttpRequest], Any]


def registered_functions(app: func.FunctionApp) -> list[Any]:
    """``app.get_functions()``, callable more than once.

    azure-functions remembers the names it indexed and refuses a second indexing of the same
    app as duplicate names; the host indexes once per process, tests many times.
    """
    saved, app.functions_bindings = app.functions_bindings, None
    try:
        return app.get_functions()
    finally:
        app.functions_bindings = saved


def http_routes(app: func.FunctionApp) -> dict[str, tuple[frozenset[str], UserFunction]]:
    routes: dict[str, tuple[frozenset[str], UserFunction]] = {}
    for function in registered_functions(app):
        trigger = function.get_trigger()
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ()))
        routes["/" + trigger.route.strip("/")] = (methods, function.get_user_function())
    return routes


def call_function(fn: UserFunction, req: func.HttpRequest) -> func.HttpResponse:
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(req))
    return fn(req)


class FunctionsHarness:
    def __init__(self, app: func.FunctionApp, host: str = "127.0.0.1") -> None:
        self.routes = http_routes(app)
        self.requests_served = 0
        harness = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                harness.requests_served += 1
                parts = urlsplit(self.path)
                route = harness.routes.get(parts.path.rstrip("/") or "/")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if route is None or self.command not in route[0]:
                    self._reply(404, {}, b"")
                    return
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    # The host folds repeated headers into one comma-separated value.
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
                req = func.HttpRequest(
                    method=self.command,
                    url=f"http://{self.headers.get('Host', harness.netloc)}{self.path}",
                    headers=headers,
                    params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    body=body,
                )
                response = call_function(route[1], req)
                self._reply(response.status_code, dict(response.headers), response.get_body() or b"")

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_HEAD = _serve

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def netloc(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def __enter__(self) -> FunctionsHarness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
