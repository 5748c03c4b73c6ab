"""Entra access: the tenant's signing keys, access-token validation, Protected Resource Metadata and
RFC 6750 challenges. Knows nothing of MCP or of Azure Functions."""
