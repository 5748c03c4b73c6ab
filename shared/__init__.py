"""The work behind ``function_app.py``, one package per layer.

A request flows ``http`` (the Functions edge: plain request/response values, host and origin checks,
the pipeline) -> ``entra`` (bearer token validation, Protected Resource Metadata, challenges) ->
``protocol`` (the MCP engine: transport checks, versions, JSON-RPC, dispatch) -> ``features`` (the
tool, resource and prompt registries forkers write against) -> ``downstream`` (on-behalf-of calls).
``bridge`` is the sign-in bridge, the app's own OAuth front door to Entra. ``settings`` is read once at
start-up. The top-level ``tools``, ``resources``, ``prompts``, ``mrtr`` and ``graph`` modules are the
stable import paths for forkers. ``pyproject.toml`` states which package may import which
(import-linter, run by ``scripts/test.sh``).
"""
