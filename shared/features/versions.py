"""The MCP protocol revisions this server speaks, and which era each belongs to.

* **2026-07-28** ("modern"): stateless by design; every request carries its version in ``_meta``.
* **2025-11-25, 2025-06-18, 2025-03-26** ("legacy"): ``initialize`` negotiates a version.
"""

from __future__ import annotations

MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SUPPORTED_VERSIONS = MODERN_VERSIONS + LEGACY_VERSIONS
# A legacy request without MCP-Protocol-Version predates the header (2025-03-26).
DEFAULT_LEGACY_VERSION = "2025-03-26"
LATEST_LEGACY_VERSION = LEGACY_VERSIONS[0]
# JSON-RPC batches exist only in this revision (2025-06-18 removed them).
BATCH_VERSION = "2025-03-26"
