"""The resource registry (``@resources.resource``, ``@resources.template``).

The public face of ``shared.features.resources``.

Forkers import from here (the README shows these paths); the code lives in its layer's package.
"""

from shared.features.resources import (
    MAX_URI_LENGTH,
    Resource,
    ResourceContents,
    ResourceNotFound,
    ResourceRegistry,
    ToolContext,
)

__all__ = [
    "MAX_URI_LENGTH",
    "Resource",
    "ResourceContents",
    "ResourceNotFound",
    "ResourceRegistry",
    "ToolContext",
]
