"""Cold start, this template: import function_app, index it as the host does, answer one authenticated tools/list."""

import json
import sys
import time

started = time.perf_counter()
import azure.functions as func  # noqa: E402

import function_app  # noqa: E402

functions = {f.get_trigger().route: f.get_user_function() for f in function_app.app.get_functions()}
imported = time.perf_counter()

from _asgi import entra_env, tools_list_request  # noqa: E402

headers, body = tools_list_request(entra_env()["token"], host="localhost:7071")
req = func.HttpRequest(method="POST", url="http://localhost:7071/mcp", headers=headers, params={}, body=body)
response = functions["mcp"](req)
answered = time.perf_counter()
tools = [t["name"] for t in json.loads(response.get_body())["result"]["tools"]]
print(json.dumps({"status": response.status_code, "tools": tools, "import_ms": (imported - started) * 1000,
                  "first_request_ms": (answered - imported) * 1000}))
sys.exit(0 if response.status_code == 200 else 1)
