"""The README's Python code blocks are real code: each compiles, and the tool/resource/prompt samples register.

Rules:

* Every fenced ```` ```python ```` block in README.md must compile.
* A block containing the comment ``# not run`` is illustrative only and is skipped entirely (neither
  compiled nor executed); use it for fragments that are not meant to be valid Python on their own.
* The blocks under the sections listed in ``SECTIONS`` are also executed, each in a fresh namespace that
  holds only what the surrounding README text implies already exists (``tools.py``'s
  ``tools = ToolRegistry()`` and its imports). Bodies may be ``...``: decorators register at definition
  time, so executing a block proves the sample registers; the functions themselves are not called.
  Each listed section must still have at least one runnable block, so renaming a heading cannot
  silently turn the check off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.features.tools import ToolContext, ToolRegistry

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = "# not run"
HEADING = re.compile(r"#{1,6}\s")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    section: str  # the nearest heading above it, without the leading #s
    code: str

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def python_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    section = ""
    fence: tuple[int, list[str]] | None = None
    in_other_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is not None:
            if stripped == "```":
                blocks.append(Block(fence[0], section, "\n".join(fence[1]) + "\n"))
                fence = None
            else:
                fence[1].append(line)
        elif in_other_fence:
            in_other_fence = stripped != "```"
        elif stripped.startswith("```"):
            language = stripped[3:].split(maxsplit=1)[0].lower() if stripped[3:].strip() else ""
            if language in ("python", "py"):
                fence = (number, [])
            else:
                in_other_fence = True
        elif HEADING.match(line):
            section = line.lstrip("#").strip()
    assert fence is None, f"README.md:{fence[0]}: unterminated python block"
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))
CHECKED = [b for b in BLOCKS if NOT_RUN not in b.code]


def _tools_py() -> dict[str, Any]:
    """"Open tools.py": it already has ``tools = ToolRegistry()``; the sample brings its own imports."""
    return {"tools": ToolRegistry()}


def _next_to_tools() -> dict[str, Any]:
    """"next to tools in tools.py": the sample uses tools.py's ToolContext import and ``json``."""
    return {"ToolContext": ToolContext, "json": json}


def _expect_tool(ns: dict[str, Any]) -> None:
    tool = ns["tools"].get("search_orders")
    assert tool is not None
    assert set(tool.input_schema["properties"]) == {"customer", "status", "limit"}  # ctx is injected, not asked


def _expect_resources_and_prompts(ns: dict[str, Any]) -> None:
    assert [d["name"] for d in ns["resources"].template_definitions()] == ["order"]
    assert ns["resources"].get_template("orders://{order_id}") is not None
    assert [d["name"] for d in ns["prompts"].definitions()] == ["summarize_order"]


# Section heading -> (namespace the text implies, what the blocks must have registered).
SECTIONS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]] = {
    "Add your own tool": (_tools_py, _expect_tool),
    "Resources, prompts, completions, and asking the user": (_next_to_tools, _expect_resources_and_prompts),
}


def test_the_readme_has_python_blocks() -> None:
    assert CHECKED, "no runnable python blocks found in README.md: has the fence syntax changed?"


@pytest.mark.parametrize("block", CHECKED, ids=lambda b: f"line{b.line}")
def test_block_compiles(block: Block) -> None:
    try:
        compile(block.code, block.where, "exec")
    except SyntaxError as exc:
        pytest.fail(f"{block.where} does not compile: {exc} (mark illustrative blocks with {NOT_RUN!r})")


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_section_samples_register(section: str) -> None:
    blocks = [b for b in CHECKED if b.section == section]
    assert blocks, f"README.md has no runnable python block under the heading {section!r}"
    prepare, expect = SECTIONS[section]
    namespace = prepare()
    for block in blocks:
        exec(compile(block.code, block.where, "exec"), namespace)
    expect(namespace)


def test_block_parser() -> None:
    text = "\n".join([
        "# Title", "```bash", "# not a heading", "```", "## Usage", "```python", "x = 1", "```",
        "```Python title", "# not run", "```", "```", "y = 2", "```", "#hashtag", "```py", "```",
    ])
    blocks = python_blocks(text)
    assert [(b.line, b.section, b.code) for b in blocks] == [
        (6, "Usage", "x = 1\n"), (9, "Usage", "# not run\n"), (16, "Usage", "\n"),
    ]
