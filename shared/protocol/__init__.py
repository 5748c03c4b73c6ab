"""The MCP protocol engine: stateless Streamable HTTP with JSON responses, for the 2026-07-28 revision and
the 2025 ones. Works on plain values (method, headers, body -> status, headers, body); imports neither
``azure.functions`` nor anything about Entra or tokens: it is handed an already verified caller."""
