"""Re-record the ``StateGraph`` + ``CachingChatModel`` + ``ToolNode`` cassettes against the emulator.

    .venv/bin/python integrations/langgraph/tests/record_cassettes_lg.py [PROVIDER ...]
    (or: cd integrations/langgraph/tests && ../../../.venv/bin/python -m record_cassettes_lg)

The emulator plays the model with the recorded assistant turns of tau-bench airline task 2
(``promptcache.lab.traces.script_from_trajectory``); the graph is the one ``test_lg_graph.py``
builds (its ``_graph``/``_run``: an agent node wrapped by ``cache_node`` stamping the clock at
15:00, 15:01, ... per call, and a ``ToolNode`` with the recorded tool outputs).
``test_lg_cassettes.py`` replays the files with nothing listening. Not collected by pytest.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _dir in (HERE.parents[1] / "langchain" / "tests", HERE):  # the LangChain tests' helpers too
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

import emulator_cassettes as ec  # noqa: E402
from helpers_lc import base_url, make_model, recorded_tools  # noqa: E402
from promptcache_langchain import CachingChatModel  # noqa: E402
from test_lg_graph import STOP, _graph, _run  # noqa: E402

from promptcache import PromptCache  # noqa: E402
from promptcache.lab.emulate import Emulator  # noqa: E402
from promptcache.lab.traces import script_from_trajectory  # noqa: E402

CASSETTES = HERE / "cassettes"
PROVIDERS = ("openai", "anthropic")
TENANT_CONFIG: dict[str, Any] = {"configurable": {"tenant_id": "acme"}}


def cassette_name(provider: str) -> str:
    return f"lg_state_graph_{provider}{ec.SUFFIX}"


def build_graph(provider: str, emu: Any, cache: PromptCache, use_async: bool) -> Any:
    traj, tools = ec.airline()
    model = CachingChatModel(make_model(provider, base_url(emu, provider), ec.STABLE_API_KEY), cache)
    return _graph(model, recorded_tools(tools, traj), cache, use_async, traj[0]["content"])


async def run_graph(graph: Any, use_async: bool) -> Any:
    traj, _ = ec.airline()
    return await _run(graph, traj, TENANT_CONFIG, use_async)


def record(provider: str) -> Path:
    traj, _ = ec.airline()
    path = CASSETTES / cassette_name(provider)
    path.unlink(missing_ok=True)  # record_mode "all" would append to it
    with Emulator(script=script_from_trajectory(traj[:STOP])) as emu:
        with ec.emulator_vcr(CASSETTES, record_mode="all").use_cassette(path.name):
            graph = build_graph(provider, emu, PromptCache(), use_async=False)
            asyncio.run(run_graph(graph, use_async=False))
        assert len(emu.requests) == 6, len(emu.requests)
    return path


def main(args: list[str]) -> None:
    """Re-record every cassette, or those of the providers named (``openai ...``)."""
    ec.isolated_cache_dir(tempfile.mkdtemp(prefix="promptcache-rec-"))
    for provider in PROVIDERS:
        if not args or provider in args:
            print("recorded", record(provider))


if __name__ == "__main__":
    main(sys.argv[1:])
