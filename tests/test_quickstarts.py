"""The README quick starts run verbatim against the provider emulator, and the README shows exactly them.

Each quick start is a file in ``examples/`` that a user could copy: its provider client reads its
base URL and key from the environment, as with a real provider. The test starts a fresh
:class:`~promptcache.lab.emulate.Emulator` (its own cache state, so the figures do not depend on test
order), points those variables at it and runs the file as a subprocess, as a user would. What
must hold is checked twice: in what the emulator served (the second call read the provider's
cache) and in what the file printed (``cache.stats()`` counted the calls).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptcache.lab.emulate import Emulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
FENCED_PYTHON = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class QuickStart:
    heading: str  # the README section that shows the file
    file: str
    modules: tuple[str, ...]  # skip, naming the package, when one is absent
    check: Callable[[str], None]  # what the printed output must show


def _stats_calls(out: str) -> int:
    """The call count of the last ``StatsRow`` the file printed (``cache.stats()``)."""
    found = re.findall(r"calls=(\d+) input_tokens=\d+ cache_read_tokens=(\d+)", out)
    assert found, f"no cache.stats() row in the output:\n{out}"
    calls, read = found[-1]
    assert int(read) > 0, f"cache.stats() shows no provider cache read:\n{out}"
    return int(calls)


def _check_langchain(out: str) -> None:
    # Each agent run prints its state["cache_metrics"].summary(): the first writes the
    # provider's cache, the second reads it back.
    first, second = (ast.literal_eval(line) for line in out.splitlines() if line.startswith("{"))
    assert first["calls"] == 1 and first["cache_read_tokens"] == 0, out
    assert second["calls"] == 1 and second["cache_read_tokens"] > 0 and second["cost_avoided_usd"] > 0, out
    assert _stats_calls(out) == 3, out  # two agent runs and one wrapped-model call, all under the tenant


def _check_langgraph(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("acme: 'Can I change my flight?' model call, cache read 0 of"), out
    assert re.match(r"acme: .* model call, cache read [1-9]\d* of", lines[1]), out
    assert lines[2] == "acme: 'Can I change my flight?' answered from the node cache, no model call", out
    # The tenant is in the node-cache key: another tenant's same question is a model call.
    assert lines[3].startswith("globex: 'Can I change my flight?' model call"), out
    assert _stats_calls(out) == 3, out


def _check_llamaindex(out: str) -> None:
    assert _stats_calls(out) == 2, out
    assert "tenant='acme'" in out.splitlines()[-1], out


def _check_core(out: str) -> None:
    reads = [int(r) for r in re.findall(r"^cache read (\d+), written", out, re.MULTILINE)]
    assert len(reads) == 2 and reads[0] == 0 and reads[1] > 0, out
    assert _stats_calls(out) == 2, out
    assert "tenant='acme'" in out.splitlines()[-1], out


QUICK_STARTS = [
    QuickStart(
        "Quick start: LangChain",
        "quickstart_langchain.py",
        ("langchain_anthropic", "promptcache_langchain"),
        _check_langchain,
    ),
    QuickStart(
        "Quick start: LangGraph",
        "quickstart_langgraph.py",
        ("langgraph", "langchain_openai", "promptcache_langgraph"),
        _check_langgraph,
    ),
    QuickStart(
        "Quick start: LlamaIndex",
        "quickstart_llamaindex.py",
        ("llama_index.llms.anthropic", "promptcache_llamaindex"),
        _check_llamaindex,
    ),
    QuickStart("Quick start: the core, for any client", "quickstart_core.py", ("anthropic",), _check_core),
]


def emulator_env(emu: Emulator, cache_dir: Path) -> dict[str, str]:
    """The environment a user sets to run against the emulator instead of the real providers."""
    env = dict(os.environ)
    # A developer's own provider settings must not send the quick starts elsewhere:
    # langchain-openai and llama-index read OPENAI_API_BASE first, langchain-anthropic ANTHROPIC_API_URL.
    for name in ("OPENAI_API_BASE", "ANTHROPIC_API_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        env.pop(name, None)
    env.update(
        OPENAI_BASE_URL=emu.openai_base_url,
        OPENAI_API_KEY="sk-emulator",
        ANTHROPIC_BASE_URL=emu.anthropic_base_url,
        ANTHROPIC_API_KEY="sk-ant-emulator",
        PROMPTCACHE_CACHE_DIR=str(cache_dir),
        PYTHONWARNINGS="ignore::DeprecationWarning",  # SDK model-deprecation notices
    )
    return env


@pytest.mark.parametrize("qs", QUICK_STARTS, ids=[q.file for q in QUICK_STARTS])
def test_quick_start_runs_against_the_emulator(qs: QuickStart, tmp_path: Path) -> None:
    for mod in qs.modules:
        pytest.importorskip(mod)
    with Emulator() as emu:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / qs.file)],
            env=emulator_env(emu, tmp_path),
            cwd=tmp_path,  # nothing may depend on being run from the repository
            capture_output=True,
            text=True,
            timeout=180,
        )
        usages = list(emu.usages)
    assert proc.returncode == 0, proc.stderr[-4000:]
    served = [u for u in usages if u is not None]
    assert len(served) >= 2, usages
    assert served[0].cache_read_tokens == 0  # a fresh emulator: the first call can only write
    assert any(u.cache_read_tokens > 0 for u in served[1:]), usages  # a later call read it back
    qs.check(proc.stdout)


def readme_sections(text: str) -> dict[str, str]:
    """Each ``## `` heading of the README mapped to its text (up to the next ``## `` heading)."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.mark.parametrize("qs", QUICK_STARTS, ids=[q.file for q in QUICK_STARTS])
def test_readme_shows_the_quick_start_file(qs: QuickStart) -> None:
    sections = readme_sections(README.read_text())
    assert qs.heading in sections, f"README has no '## {qs.heading}' section"
    blocks = FENCED_PYTHON.findall(sections[qs.heading])
    # One block, the whole file: what the README shows is what CI runs.
    assert blocks == [(EXAMPLES / qs.file).read_text()], (
        f"the python block under '## {qs.heading}' differs from examples/{qs.file}"
    )
