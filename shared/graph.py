"""A small Microsoft Graph client for tools, on behalf of the caller: the public face of ``shared.downstream.graph``.

Forkers import from here (the README shows these paths); the code lives in its layer's package.
"""

from shared.downstream.graph import (
    GraphClient,
    get,
    graph_scope,
)

__all__ = [
    "GraphClient",
    "get",
    "graph_scope",
]
