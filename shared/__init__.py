"""Shared building blocks of the MCP server."""
