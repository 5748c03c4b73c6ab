"""Who is asking: the OAuth client behind a ``client_id``, as the bridge knows it without storing anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.bridge.redirects import is_deliverable

MAX_NAME_LENGTH = 100


def display_name(value: object) -> str | None:
    """A client-supplied name fit for the consent page, or None: printable, encodable, bounded."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())[:MAX_NAME_LENGTH]
    if not name or not name.isprintable():
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return None
    return name


class ClientError(Exception):
    """The ``client_id`` names no client this bridge can serve; ``description`` says why (safe to show)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Client:
    client_id: str
    # What the consent page shows. From a metadata document it is vouched for by the document's host;
    # from dynamic registration it is whatever the client said.
    name: str
    redirect_uris: tuple[str, ...]
    kind: Literal["metadata_document", "registered"]

    @property
    def vouched_by(self) -> str | None:
        """The host that publishes this client's metadata, or None for a self-registered client."""
        if self.kind != "metadata_document":
            return None
        return self.client_id.split("/", 3)[2]

    def allows_redirect(self, uri: str) -> bool:
        return is_deliverable(uri, self.redirect_uris)
