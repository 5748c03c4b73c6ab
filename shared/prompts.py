"""The prompt registry (``@prompts.prompt``): the public face of ``shared.features.prompts``.

Forkers import from here (the README shows these paths); the code lives in its layer's package.
"""

from shared.features.prompts import (
    Prompt,
    PromptArgumentError,
    PromptMessage,
    PromptRegistry,
    PromptResult,
    ToolContext,
    UnknownPromptError,
)

__all__ = [
    "Prompt",
    "PromptArgumentError",
    "PromptMessage",
    "PromptRegistry",
    "PromptResult",
    "ToolContext",
    "UnknownPromptError",
]
