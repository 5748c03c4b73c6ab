"""Multi round-trip requests, how a tool asks the client for input: the public face of ``shared.features.mrtr``.

Forkers import from here (the README shows these paths); the code lives in its layer's package.
"""

from shared.features.mrtr import (
    InputRequest,
    InputRequired,
    accepted,
    client_supports,
    elicit_form,
    elicit_url,
    list_roots,
    sample,
)

__all__ = [
    "InputRequest",
    "InputRequired",
    "accepted",
    "client_supports",
    "elicit_form",
    "elicit_url",
    "list_roots",
    "sample",
]
