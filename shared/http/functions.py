"""Adapter between Azure Functions' HTTP types and the transport-neutral pipeline."""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared.http.messages import HttpRequest, HttpResponse


def to_request(req: func.HttpRequest) -> HttpRequest:
    return HttpRequest(
        method=req.method,
        url=req.url,
        headers={k.lower(): v for k, v in req.headers.items()},
        body=req.get_body() or b"",
        query=dict(req.params),
    )


def to_response(response: HttpResponse) -> func.HttpResponse:
    return func.HttpResponse(body=response.body, status_code=response.status, headers=dict(response.headers))


def serve(handler: Callable[[HttpRequest], HttpResponse], req: func.HttpRequest) -> func.HttpResponse:
    """Run one pipeline handler for a Functions request."""
    return to_response(handler(to_request(req)))
