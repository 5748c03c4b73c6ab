"""One vocabulary: every setting name the code declares appears, unchanged, in the sample
settings and the README, and nothing else uses a name the code does not know."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import REQUIRED_SETTINGS, SETTING_NAMES

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
OWN_PREFIXES = ("ENTRA_", "MCP_", "OBO_", "GRAPH_", "AZURE_AUTHORITY")


def test_sample_settings_use_only_known_names_and_list_the_required_ones() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(values) - PLATFORM <= set(SETTING_NAMES)
    assert set(REQUIRED_SETTINGS) <= set(values)


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in SETTING_NAMES if f"`{name}`" not in readme]
    assert not missing


def test_code_reads_no_undeclared_setting() -> None:
    prefixes = "|".join(OWN_PREFIXES)
    pattern = re.compile(rf"""["']((?:{prefixes})[A-Z_]+)["']""")
    used = set()
    for path in [ROOT / "function_app.py", *sorted((ROOT / "shared").glob("*.py"))]:
        used |= set(pattern.findall(path.read_text()))
    assert used <= set(SETTING_NAMES), sorted(used - set(SETTING_NAMES))
