"""What forkers write against: the tool, resource, prompt and completion registries, type hints to JSON
Schema, and what those functions receive (``ToolContext``) and raise. Knows neither HTTP nor Entra.
Forkers import it through the stable top-level modules ``shared.tools``, ``shared.resources``,
``shared.prompts`` and ``shared.mrtr``."""
