"""The README's list of client redirect URIs is the code's default (one vocabulary)."""

from __future__ import annotations

from pathlib import Path

from shared.settings import DEFAULT_BRIDGE_REDIRECT_URIS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_readme_lists_the_default_client_redirect_uris() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `MCP_BRIDGE_REDIRECT_URIS` |"))
    for uri in DEFAULT_BRIDGE_REDIRECT_URIS:
        assert f"`{uri}`" in row, uri
