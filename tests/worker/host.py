"""A small in-process Functions host for the real Python worker (``azure-functions-runtime``, Python 3.13+).

On Python 3.13+ Azure runs the app with the ``azure-functions-runtime`` package, driven by the host's gRPC proxy
worker (not on PyPI). This stands in for the host and that proxy, in one process, and speaks to the worker the
same way, with the same protobuf messages:

1. ``WorkerInitRequest`` (the worker indexes ``function_app.py`` here: the app's settings are read now, and a bad
   one fails the init, as it fails a cold start in Azure),
2. ``FunctionsMetadataRequest`` (the functions and their raw bindings, which give the routes, as the host reads
   them),
3. ``FunctionLoadRequest`` for each function,
4. an ``InvocationRequest`` with an ``RpcHttp`` input per HTTP request; the ``RpcHttp`` return value becomes the
   response (cookies become ``Set-Cookie``), and a failed invocation is a bare 500, as the host answers.

It serves the HTTP functions on a loopback port (``routePrefix`` from host.json) and prints one JSON line to
stdout: ``{"event": "ready", "url": ...}`` once serving, or ``{"event": "failed", ...}`` (exit status 1) when a step
fails. Logs go to stderr. It stops when stdin closes (so it never outlives the test that started it) or on SIGTERM.

Runs under the worker venv (scripts/test.sh: .tools/worker/venv, requirements.txt + tests/worker/requirements.txt)
with the generated protobuf modules from tests/worker/fetch_protos.py. tests/test_worker.py starts it.
Usage: python tests/worker/host.py [--app-dir DIR] [--protos DIR] [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INVOCATION_TIMEOUT_SECONDS = 120
STEP_TIMEOUT_SECONDS = 120
HOST_VERSION = "4.0.0-tests-worker-host"

log = logging.getLogger("tests.worker.host")


class WorkerRequest:
    """What the proxy worker hands the library worker: the StreamingMessage plus the host and the protos."""

    def __init__(self, name: str, request: Any, properties: dict[str, Any]) -> None:
        self.name = name
        self.request = request
        self.properties = properties


@dataclass(frozen=True)
class HttpFunction:
    name: str
    function_id: str
    param: str
    methods: frozenset[str]  # empty: every method
    route: str
    pattern: re.Pattern[str]


class StepFailed(Exception):
    def __init__(self, stage: str, status: Any) -> None:
        self.stage = stage
        self.exception = {
            "message": status.exception.message,
            "stack_trace": status.exception.stack_trace,
            "source": status.exception.source,
        }
        super().__init__(f"{stage} failed: {status.exception.message}")


def load_protos(protos_dir: Path) -> types.SimpleNamespace:
    sys.path.insert(0, str(protos_dir))
    from functions_rpc import FunctionRpc_pb2
    from functions_rpc.shared import NullableTypes_pb2

    names: dict[str, Any] = {}
    for module in (FunctionRpc_pb2, NullableTypes_pb2):
        names.update({name: getattr(module, name) for name in dir(module) if not name.startswith("_")})
    return types.SimpleNamespace(**names)


def route_pattern(route: str) -> re.Pattern[str]:
    """An ASP.NET-style route template (``orders/{id}``, ``{id:int}``, ``{*rest}``) as a case-insensitive regex."""
    parts = []
    for segment in route.strip("/").split("/"):
        match = re.fullmatch(r"\{(\*?)([A-Za-z_]\w*)(?::[^}]*)?(\?)?\}", segment)
        if match is None:
            parts.append(re.escape(segment))
        elif match.group(1):
            parts.append(f"(?P<{match.group(2)}>.*)")
        else:
            parts.append(f"(?P<{match.group(2)}>[^/]+)" + ("?" if match.group(3) else ""))
    return re.compile("/" + "/".join(parts), re.IGNORECASE)


def route_prefix(app_dir: Path) -> str:
    try:
        host_json = json.loads((app_dir / "host.json").read_text())
    except (OSError, ValueError):
        return "api"
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


class Host:
    def __init__(self, app_dir: Path, protos_dir: Path) -> None:
        self.app_dir = app_dir
        self.protos = load_protos(protos_dir)
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        self.functions: list[HttpFunction] = []
        self.timings: dict[str, float] = {}
        self.runtime: Any = None

    # --- the worker protocol -------------------------------------------------------------------------------------

    def _call(self, handler: Callable[[WorkerRequest], Any], name: str, message: Any, timeout: float) -> Any:
        request = WorkerRequest(name, message, {"host": "127.0.0.1", "protos": self.protos})
        return asyncio.run_coroutine_threadsafe(handler(request), self.loop).result(timeout)

    def _check(self, stage: str, response: Any) -> Any:
        if response.result.status != self.protos.StatusResult.Success:
            raise StepFailed(stage, response.result)
        return response

    def start(self) -> None:
        p = self.protos
        self._loop_thread.start()
        # The proxy worker puts the app folder on sys.path and runs from it; so does Azure (/home/site/wwwroot).
        sys.path.insert(0, str(self.app_dir))
        os.chdir(self.app_dir)

        started = time.perf_counter()
        import azure_functions_runtime as runtime

        self.runtime = runtime
        self.timings["import_runtime"] = time.perf_counter() - started

        started = time.perf_counter()
        init = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            worker_init_request=p.WorkerInitRequest(
                host_version=HOST_VERSION,
                function_app_directory=str(self.app_dir),
                worker_directory=str(Path(runtime.__file__).parent),
            ),
        )
        response = self._call(runtime.worker_init_request, "WorkerInitRequest", init, STEP_TIMEOUT_SECONDS)
        self._check("WorkerInitRequest", response)
        self.timings["worker_init"] = time.perf_counter() - started
        log.info("Worker %s (Python %s) initialized, capabilities %s", response.worker_metadata.worker_version,
                 response.worker_metadata.runtime_version, dict(response.capabilities))

        started = time.perf_counter()
        metadata_request = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            functions_metadata_request=p.FunctionsMetadataRequest(function_app_directory=str(self.app_dir)),
        )
        metadata = self._call(runtime.functions_metadata_request, "FunctionsMetadataRequest", metadata_request,
                              STEP_TIMEOUT_SECONDS)
        self._check("FunctionsMetadataRequest", metadata)
        results = list(metadata.function_metadata_results)
        if not results:
            raise RuntimeError("FunctionsMetadataRequest: the worker found no functions ('No job functions found')")
        self.timings["functions_metadata"] = time.perf_counter() - started

        started = time.perf_counter()
        prefix = route_prefix(self.app_dir)
        for function in results:
            load = p.StreamingMessage(
                request_id=str(uuid.uuid4()),
                function_load_request=p.FunctionLoadRequest(function_id=function.function_id, metadata=function),
            )
            self._check(f"FunctionLoadRequest({function.name})",
                        self._call(runtime.function_load_request, "FunctionLoadRequest", load, STEP_TIMEOUT_SECONDS))
            http_function = self._http_function(function, prefix)
            if http_function is not None:
                self.functions.append(http_function)
        self.timings["function_load"] = time.perf_counter() - started
        # The proxy starts the worker's thread pool for sync functions before the first invocation.
        runtime.start_threadpool_executor()

    def _http_function(self, function: Any, prefix: str) -> HttpFunction | None:
        for raw in function.raw_bindings:
            binding = json.loads(raw)
            if binding.get("type", "").lower() == "httptrigger" and binding.get("direction", "").upper() == "IN":
                route = binding.get("route") or function.name
                route = f"{prefix}/{route.strip('/')}" if prefix else route.strip("/")
                methods = frozenset(str(m).upper() for m in (binding.get("methods") or ()))
                return HttpFunction(function.name, function.function_id, binding["name"], methods, "/" + route,
                                    route_pattern(route))
        return None

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop_threadpool_executor()
        self.loop.call_soon_threadsafe(self.loop.stop)

    # --- one HTTP request ----------------------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        """The function for a request as the host routes it: a path no function has, or a method it does not
        register, is 404."""
        for function in self.functions:
            match = function.pattern.fullmatch(path.rstrip("/") or "/")
            if match and (not function.methods or method in function.methods):
                return function, {k: v for k, v in match.groupdict().items() if v is not None}
        return None

    def invoke(self, function: HttpFunction, method: str, url: str, headers: dict[str, str], query: dict[str, str],
               route_params: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        p = self.protos
        http = p.RpcHttp(method=method, url=url, headers=headers, query=query, params=route_params)
        if body:
            http.body.CopyFrom(p.TypedData(bytes=body))
        invocation_id = str(uuid.uuid4())
        message = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            invocation_request=p.InvocationRequest(
                invocation_id=invocation_id,
                function_id=function.function_id,
                input_data=[p.ParameterBinding(name=function.param, data=p.TypedData(http=http))],
            ),
        )
        started = time.perf_counter()
        response = self._call(self.runtime.invocation_request, "InvocationRequest", message,
                              INVOCATION_TIMEOUT_SECONDS)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.result.status != p.StatusResult.Success:
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)\n%s", function.name, invocation_id,
                      elapsed_ms, response.result.exception.message)
            return 500, [], b""
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", function.name, invocation_id,
                 elapsed_ms)
        return self._http_response(response.return_value)

    def _http_response(self, value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        kind = value.WhichOneof("data")
        if kind == "string":
            return 200, [("Content-Type", "text/plain; charset=utf-8")], value.string.encode()
        if kind != "http":
            return 204 if kind is None else 200, [], b""
        http = value.http
        headers = [(name, header) for name, header in http.headers.items()
                   if name.lower() not in ("content-length", "transfer-encoding", "connection")]
        headers += [("Set-Cookie", self._set_cookie(cookie)) for cookie in http.cookies]
        return int(http.status_code or 200), headers, typed_bytes(http.body)

    def _set_cookie(self, cookie: Any) -> str:
        same_site = self.protos.RpcHttpCookie.SameSite
        parts = [f"{cookie.name}={cookie.value}"]
        if cookie.HasField("expires"):
            expires = cookie.expires.value.ToDatetime().replace(tzinfo=UTC)
            parts.append(f"expires={format_datetime(expires, usegmt=True)}")
        if cookie.HasField("max_age"):
            parts.append(f"max-age={int(cookie.max_age.value)}")
        if cookie.HasField("domain") and cookie.domain.value:
            parts.append(f"domain={cookie.domain.value}")
        if cookie.HasField("path") and cookie.path.value:
            parts.append(f"path={cookie.path.value}")
        if cookie.HasField("secure") and cookie.secure.value:
            parts.append("secure")
        names = {same_site.Lax: "lax", same_site.Strict: "strict", same_site.ExplicitNone: "none"}
        if cookie.same_site in names:
            parts.append(f"samesite={names[cookie.same_site]}")
        if cookie.HasField("http_only") and cookie.http_only.value:
            parts.append("httponly")
        return "; ".join(parts)


def typed_bytes(data: Any) -> bytes:
    kind = data.WhichOneof("data")
    if kind == "bytes":
        return bytes(data.bytes)
    if kind in ("string", "json"):
        return getattr(data, kind).encode()
    return b""


def serve(host: Host, address: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            routed = host.route(self.command, parts.path)
            if routed is None:
                self._reply(404, [], b"")
                return
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                # ASP.NET joins a repeated header's values with a comma.
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            query: dict[str, str] = {}
            for name, value in parse_qsl(parts.query, keep_blank_values=True):
                query[name] = f"{query[name]},{value}" if name in query else value
            url = f"http://{self.headers.get('Host', self.server.server_address[0])}{self.path}"
            try:
                status, response_headers, response_body = host.invoke(routed[0], self.command, url, headers, query,
                                                                      routed[1], body)
            except Exception:
                log.exception("Invocation of %s did not complete", routed[0].name)
                status, response_headers, response_body = 500, [], b""
            self._reply(status, response_headers, response_body)

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_HEAD = _serve

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    return server


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("azure-functions-runtime", "azure-functions", "protobuf"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, default=ROOT)
    parser.add_argument("--protos", type=Path, default=ROOT / ".tools" / "worker" / "protos")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(levelname)s] %(name)s: %(message)s")
    # The script's own folder must not shadow the app's modules.
    if sys.path and Path(sys.path[0]).resolve() == HERE:
        sys.path.pop(0)

    if sys.version_info < (3, 13):
        emit({"event": "failed", "stage": "python", "exception": {"message": f"Python 3.13+ is required, this is "
                                                                  f"{sys.version.split()[0]}"}})
        return 1
    if not (args.protos / "functions_rpc" / "FunctionRpc_pb2.py").is_file():
        emit({"event": "failed", "stage": "protos", "exception": {
            "message": f"no FunctionRpc_pb2 in {args.protos} (run tests/worker/fetch_protos.py)"}})
        return 1

    started = time.perf_counter()
    host = Host(args.app_dir.resolve(), args.protos.resolve())
    try:
        host.start()
    except StepFailed as failure:
        log.error("Worker failed to index functions\nResult: Failure\nException: %s\nStack: %s",
                  failure.exception["message"], failure.exception["stack_trace"])
        emit({"event": "failed", "stage": failure.stage, "exception": failure.exception, "versions": versions()})
        host.stop()
        return 1
    except Exception as exc:  # an import error of the worker itself, a timeout, no functions
        log.exception("The worker did not start")
        emit({"event": "failed", "stage": "host", "exception": {"message": f"{type(exc).__name__}: {exc}"},
              "versions": versions()})
        host.stop()
        return 1

    server = serve(host, args.address, args.port)
    bound_address, bound_port = server.server_address[:2]
    emit({
        "event": "ready",
        "url": f"http://{bound_address}:{bound_port}",
        "functions": [{"name": f.name, "route": f.route, "methods": sorted(f.methods)} for f in host.functions],
        "seconds": {**{k: round(v, 4) for k, v in host.timings.items()},
                    "total": round(time.perf_counter() - started, 4)},
        "versions": versions(),
        "at": datetime.now(UTC).isoformat(),
    })

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        server.shutdown()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
