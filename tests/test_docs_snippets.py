"""The main snippet of each framework guide runs as written, against the provider emulator.

A fenced ``python`` block directly preceded by a ``<!-- test -->`` comment is extracted from the
guide and executed in a fresh namespace (its own asserts say what a reader should see). Only marked
blocks run: the others are fragments (``...`` placeholders) that show a call, not a program.
"""

from __future__ import annotations

import re
import sys
import types
import warnings
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"
MARKED = re.compile(r"<!--\s*test\s*-->\s*\n```python\n(.*?)\n```", re.DOTALL)

# Each guide's snippet and the packages it needs (skip, naming the package, when one is absent).
CASES = {
    "langchain.md": ("langchain_openai", "promptcache_langchain"),
    "langgraph.md": ("langgraph", "langchain_openai", "promptcache_langgraph"),
    "llamaindex.md": ("llama_index.llms.openai", "promptcache_llamaindex"),
    "reporting.md": ("matplotlib",),
}


def marked_blocks(path: Path) -> list[str]:
    """The ``<!-- test -->`` python blocks of a markdown file, in order."""
    return MARKED.findall(path.read_text())


def test_every_guide_has_one_tested_snippet() -> None:
    for name in CASES:
        assert len(marked_blocks(GUIDES / name)) == 1, name


@pytest.mark.parametrize("name", list(CASES))
def test_guide_snippet_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for mod in CASES[name]:
        pytest.importorskip(mod)
    (code,) = marked_blocks(GUIDES / name)
    # A real module, as when a reader runs the snippet as a script: typing resolves the annotations
    # of classes it defines (a LangGraph state schema) through sys.modules.
    module = types.ModuleType(f"docs_snippet_{name.removesuffix('.md')}")
    sys.modules[module.__name__] = module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # SDK model-deprecation notices
            exec(compile(code, str(GUIDES / name), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert capsys.readouterr().out.strip(), "the snippet prints what a reader should see"
