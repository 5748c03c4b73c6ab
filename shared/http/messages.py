"""Transport-neutral HTTP values: the request the pipeline reads and the response it returns.

Plain frozen dataclasses with no behaviour beyond reading themselves, so the pipeline, the MCP engine
and the consent page can be exercised without a web framework; ``shared.http.functions`` is the only
module that converts them to and from Azure Functions' types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class HttpRequest:
    """A transport-neutral HTTP request. Header names are lower-case."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Query parameters as the host parsed them; parsed from ``url`` when not given.
    query: Mapping[str, str] | None = None

    @property
    def query_params(self) -> Mapping[str, str]:
        if self.query is not None:
            return self.query
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    @property
    def host(self) -> str:
        return (self.headers.get("host") or urlsplit(self.url).netloc).lower()

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower() or "http"


@dataclass(frozen=True)
class HttpResponse:
    """A transport-neutral HTTP response."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # What was asked (JSON-RPC method and tool/prompt/resource name), for the request log.
    rpc: Mapping[str, str] | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def with_headers(self, headers: Mapping[str, str]) -> HttpResponse:
        """This response with ``headers`` added (they win over its own); itself when there are none."""
        if not headers:
            return self
        return HttpResponse(self.status, {**self.headers, **headers}, self.body, self.rpc)
