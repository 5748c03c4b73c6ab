"""Shared fixtures. A fake Entra tenant (tests/fake_entra.py) runs for the whole session over real HTTPS.

The app reads its settings once at import, and test modules import it at collection time, so the fake tenant is
started and the settings environment is set in pytest_configure (before collection) rather than in a fixture.
The product trusts the fake's throwaway CA only through the standard REQUESTS_CA_BUNDLE / SSL_CERT_FILE variables,
exactly as an operator would configure a private CA; there is no test-only switch in product code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# Product modules (function_app, shared.*) import from the repo root; tests import helpers such as fake_entra from
# tests/ (a rootdir-style folder without __init__.py). Repo root goes first so a product module always wins.
for _path in (str(TESTS_DIR), str(REPO_ROOT)):
    if _path in sys.path:
        sys.path.remove(_path)
    sys.path.insert(0, _path)

from fake_entra import AZURE_CLI_CLIENT_ID, VSCODE_CLIENT_ID, FakeEntra  # noqa: E402

ALLOWED_CLIENT_IDS = f"{VSCODE_CLIENT_ID},{AZURE_CLI_CLIENT_ID}"
ALLOWED_ORIGINS = "http://localhost:6274"  # the MCP Inspector's default origin

# Optional settings (and Azure-provided ones) that a developer's shell may carry: cleared for the session so tests
# see the documented defaults unless they set a value themselves.
_CLEARED_ENV = (
    "ENTRA_APP_ID_URI",
    "MCP_REQUIRED_SCOPES",
    "MCP_APP_ROLES",
    "MCP_PUBLIC_BASE_URL",
    "WEBSITE_HOSTNAME",
    "OBO_MANAGED_IDENTITY_CLIENT_ID",
    "OBO_CLIENT_CERTIFICATE_PATH",
    "OBO_CLIENT_CERTIFICATE_PASSWORD",
    "OBO_CLIENT_SECRET",
    "GRAPH_API_BASE_URL",
    "CURL_CA_BUNDLE",
)

_FAKE_ENTRA = pytest.StashKey[FakeEntra]()
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()


def settings_env(fake: FakeEntra) -> dict[str, str]:
    """The app settings pointing at ``fake``; also usable for extra FakeEntra instances in a test."""
    return {
        "ENTRA_TENANT_ID": fake.tenant_id,
        "ENTRA_CLIENT_ID": fake.api_client_id,
        "ENTRA_ALLOWED_CLIENT_IDS": ALLOWED_CLIENT_IDS,
        "AZURE_AUTHORITY_HOST": fake.authority,
        "MCP_ALLOWED_ORIGINS": ALLOWED_ORIGINS,
    }


def pytest_configure(config: pytest.Config) -> None:
    fake = FakeEntra(allowed_client_id=VSCODE_CLIENT_ID).start()
    config.stash[_FAKE_ENTRA] = fake

    env: dict[str, str | None] = {
        **settings_env(fake),
        "REQUESTS_CA_BUNDLE": fake.ca_bundle,
        "SSL_CERT_FILE": fake.ca_bundle,
        **dict.fromkeys(_CLEARED_ENV),
    }
    config.stash[_SAVED_ENV] = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in config.stash.get(_SAVED_ENV, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    fake = config.stash.get(_FAKE_ENTRA, None)
    if fake is not None:
        fake.stop()


@pytest.fixture(scope="session")
def fake_entra(pytestconfig: pytest.Config) -> FakeEntra:
    """The session's fake Entra tenant, the one the app settings (and so function_app) point at."""
    return pytestconfig.stash[_FAKE_ENTRA]


@pytest.fixture
def entra(fake_entra: FakeEntra) -> Iterator[FakeEntra]:
    """The session tenant for tests that inject faults, rotate keys or read counters: clean state before and after."""
    fake_entra.reset()
    yield fake_entra
    fake_entra.reset()


@pytest.fixture
def app_env(fake_entra: FakeEntra) -> dict[str, str]:
    """The app settings as a fresh mapping, for tests that build Settings from a mapping."""
    return settings_env(fake_entra)


@pytest.fixture
def token(fake_entra: FakeEntra) -> str:
    """A valid v2 delegated access token for user alice, from the VS Code client, with scope user_impersonation."""
    return fake_entra.mint()
