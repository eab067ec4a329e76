"""The package's layering, checked on the source and in a fresh interpreter (issue 21, "Core v2").

* The runtime never imports the lab (:mod:`promptcache.lab`: simulator, emulator, replay, report,
  bench, demos): not statically (no module outside ``lab/`` names it) and not at run time
  (importing ``promptcache`` and the three integration packages loads no ``promptcache.lab``
  module and no matplotlib). The CLI names the lab's commands but imports a command's module only
  when that command runs: ``promptcache --help`` and ``promptcache stats`` load none of the lab.
* The README's layout section and the architecture page name every top-level entry of
  ``src/promptcache/`` and of ``lab/``, and nothing that is not there.
* The gateway (:mod:`promptcache.gateway`, ``promptcache proxy``) sits beside the integrations:
  no runtime module outside ``gateway/`` imports it, and importing ``promptcache`` (and the CLI's
  listing) loads neither it nor its server dependencies (Starlette, uvicorn, prometheus-client).
* ``providers/`` is one level: provider-specific knowledge (hints, usage parsing, fallback,
  gateways, Gemini cached contents, pre-warm requests) that imports nothing above it: not the
  engine, not the SDK seams (``llm_bridge``, ``transport``, ``botocore_events``,
  ``anthropic_middleware``), no integration.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import promptcache

SRC = Path(promptcache.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    yield from _imports(path.read_text(encoding="utf-8"), package)


def _imports(source: str, package: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            # ``from promptcache import engine`` imports a module by its attribute name.
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        {
            f"{path.relative_to(SRC.parent)}:{line} imports {module}"
            for path in files
            for line, module in imported_modules(path)
            if _under(module, forbidden)
        }
    )


PROVIDERS_MUST_NOT_IMPORT = (
    "promptcache.engine",
    "promptcache.llm_bridge",
    "promptcache.transport",
    "promptcache.botocore_events",
    "promptcache.anthropic_middleware",
    "promptcache.lab",
    "promptcache_langchain",
    "promptcache_langgraph",
    "promptcache_llamaindex",
    "langchain",
    "langchain_core",
    "langgraph",
    "llama_index",
)


def test_providers_import_nothing_above_them() -> None:
    files = sorted((SRC / "providers").rglob("*.py"))
    assert files, "providers/ not found"
    assert _violations(files, PROVIDERS_MUST_NOT_IMPORT) == []


def test_providers_is_one_level() -> None:
    # No subpackages: providers/ is a flat set of modules, each about one provider concern.
    assert [p.name for p in (SRC / "providers").iterdir() if p.is_dir() and p.name != "__pycache__"] == []


def test_no_runtime_module_imports_the_lab() -> None:
    runtime = [p for p in sorted(SRC.rglob("*.py")) if (SRC / "lab") not in p.parents]
    assert len(runtime) > 40, "the runtime modules were not found"
    assert _violations(runtime, ("promptcache.lab",)) == []


#: What the gateway brings, never loaded by ``import promptcache`` (its extra: ``gateway``).
GATEWAY_ONLY = ("promptcache.gateway", "starlette", "uvicorn", "uvloop", "httptools", "prometheus_client")


def test_no_runtime_module_imports_the_gateway() -> None:
    runtime = [p for p in sorted(SRC.rglob("*.py")) if (SRC / "gateway") not in p.parents]
    assert (SRC / "gateway" / "app.py").exists()
    # httpx-aiohttp too (the openai SDK may load it on its own, so only the static check names it).
    assert _violations(runtime, (*GATEWAY_ONLY[:3], "httpx_aiohttp")) == []


INTEGRATIONS = ("promptcache_langchain", "promptcache_langgraph", "promptcache_llamaindex")

_PROBE = """
import json, sys
import promptcache
from promptcache.cli import build_parser
build_parser()  # lists every command, imports none of their modules
for name in {integrations!r}:
    __import__(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_runtime_and_the_integrations_loads_no_lab_and_no_matplotlib() -> None:
    for name in INTEGRATIONS:
        pytest.importorskip(name)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(integrations=INTEGRATIONS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert set(INTEGRATIONS) <= set(loaded)
    leaked = [m for m in loaded if _under(m, ("promptcache.lab", "matplotlib", *GATEWAY_ONLY))]
    assert leaked == []


# Runs the real entry point, then reports what it loaded (atexit: --help ends in SystemExit).
_CLI_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from promptcache.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _modules_loaded_by_the_cli(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: promptcache")
    return list(json.loads(done.stderr.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["stats", "--help"], ["invalidate", "--help"]])
def test_the_cli_loads_the_lab_only_for_a_lab_command(argv: list[str]) -> None:
    loaded = _modules_loaded_by_the_cli(*argv)
    assert "promptcache.cli" in loaded
    assert [m for m in loaded if _under(m, ("promptcache.lab", "matplotlib", *GATEWAY_ONLY))] == []


def test_a_lab_command_loads_its_module_when_it_runs() -> None:
    # The check above would pass on a probe that saw nothing: here the same probe sees the lab.
    loaded = _modules_loaded_by_the_cli("bench", "--help")
    assert "promptcache.lab.bench" in loaded
    assert "promptcache.lab.report" not in loaded  # only the chosen command's module
    # The proxy's help needs its module only, not the server: uvicorn is imported when it serves.
    proxy = _modules_loaded_by_the_cli("proxy", "--help")
    assert "promptcache.gateway.cli" in proxy
    assert [m for m in proxy if _under(m, ("uvicorn", "starlette", "promptcache.lab"))] == []


ROOT = SRC.parents[1]
_FILE_NAME = re.compile(r"^[\w.]+(?:\.py|/)$|^py\.typed$")


def _leading_file_names(line: str) -> list[str]:
    names: list[str] = []
    for word in line.split():
        if not _FILE_NAME.match(word):
            break
        names.append(word)
    return names


def _tree_entries(folder: Path) -> set[str]:
    return {
        p.name + ("/" if p.is_dir() else "")
        for p in folder.iterdir()
        if p.name != "__pycache__" and not p.name.startswith(".") and not p.name.endswith(".egg-info")
    }


def _readme_layout() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    lines = block.splitlines()
    assert lines[0].startswith("src/promptcache/")
    return lines[1 : next(i for i, line in enumerate(lines) if line.startswith("integrations/"))]


def test_the_readme_layout_names_exactly_the_tree() -> None:
    lines = _readme_layout()
    named = [name for line in lines for name in _leading_file_names(line)]
    assert sorted(named) == sorted(_tree_entries(SRC)), "README 'Layout' and src/promptcache/ differ"
    lab_text = " ".join(lines[next(i for i, line in enumerate(lines) if line.strip().startswith("lab/")) :])
    lab_words = set(re.findall(r"[\w/]+", lab_text))
    lab = {p.removesuffix(".py") for p in _tree_entries(SRC / "lab") if p != "__init__.py"} - {"data/"}
    assert lab <= lab_words, "README 'Layout' misses lab modules"
    assert _tree_entries(SRC / "lab" / "data") == {"real/"} and "data/real/" in lab_words


def test_the_architecture_page_names_only_what_exists() -> None:
    text = (ROOT / "docs" / "concepts" / "architecture.md").read_text(encoding="utf-8")
    lab_part = text.split("## The lab", 1)[1]
    runtime_part = text.split("## The lab", 1)[0]
    # Names in backticks, and the names a line of the diagram starts with.
    runtime_names = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", runtime_part))
    for line in runtime_part.split("```\n", 2)[1].splitlines():
        runtime_names.update(_leading_file_names(line))
    lab_names = set(re.findall(r"`([a-z_]+\.py|data/real/)`", lab_part))
    missing = [n for n in runtime_names if not (SRC / n).exists() and not (ROOT / n).exists()]
    missing += [n for n in lab_names if not (SRC / "lab" / n).exists()]
    assert missing == []
    for entry in _tree_entries(SRC) - {"__init__.py", "_cliutil.py", "py.typed", "data/"}:
        assert entry in runtime_names, f"the architecture page does not place {entry}"


def test_the_walker_sees_lazy_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..engine import PromptCache\n"
        "def f():\n    from promptcache import llm_bridge\n    import promptcache.lab.emulate\n"
    )
    found = {m for _, m in _imports(source, "promptcache.providers")}
    assert {"promptcache.engine", "promptcache.llm_bridge", "promptcache.lab.emulate"} <= found
