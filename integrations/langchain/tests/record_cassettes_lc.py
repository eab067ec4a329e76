"""Re-record the ``create_agent`` + ``PromptCacheMiddleware`` cassettes against the provider emulator.

    .venv/bin/python integrations/langchain/tests/record_cassettes_lc.py [PROVIDER ...]
    (or: cd integrations/langchain/tests && ../../../.venv/bin/python -m record_cassettes_lc)

The emulator plays the model with the recorded assistant turns of tau-bench airline task 2
(``promptcache.lab.traces.script_from_trajectory``); the agent is the one ``test_lc_agent.py``
builds (its ``_agent``/``_run``), with the clock line stamped at 15:00, 15:01, ... per call.
``test_lc_cassettes.py`` replays the files with nothing listening. Not collected by pytest.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import emulator_cassettes as ec  # noqa: E402
from promptcache_langchain import PromptCacheMiddleware  # noqa: E402
from test_lc_agent import STOP, _agent, _run  # noqa: E402

from promptcache import PromptCache  # noqa: E402
from promptcache.lab.emulate import Emulator  # noqa: E402
from promptcache.lab.traces import script_from_trajectory  # noqa: E402

CASSETTES = HERE / "cassettes"
PROVIDERS = ("openai", "openai_gpt56", "anthropic")
TENANT_CONFIG: dict[str, Any] = {"configurable": {"tenant_id": "acme"}}


def cassette_name(provider: str) -> str:
    return f"lc_create_agent_{provider}{ec.SUFFIX}"


def build_agent(provider: str, emu: Any, cache: PromptCache) -> Any:
    traj, tools = ec.airline()
    return _agent(provider, emu, ec.STABLE_API_KEY, traj, tools, [PromptCacheMiddleware(cache)])


async def run_agent(agent: Any, use_async: bool) -> Any:
    traj, _ = ec.airline()
    return await _run(agent, traj, TENANT_CONFIG, use_async)


def record(provider: str) -> Path:
    traj, _ = ec.airline()
    recorder = ec.emulator_vcr(CASSETTES, record_mode="all")
    (CASSETTES / cassette_name(provider)).unlink(missing_ok=True)  # "all" would append to it
    with Emulator(script=script_from_trajectory(traj[:STOP])) as emu:
        with recorder.use_cassette(cassette_name(provider)):
            asyncio.run(run_agent(build_agent(provider, emu, PromptCache()), use_async=False))
        assert len(emu.requests) == 6, len(emu.requests)
    return CASSETTES / cassette_name(provider)


def main(args: list[str]) -> None:
    """Re-record every cassette, or those of the providers named (``openai_gpt56 ...``)."""
    ec.isolated_cache_dir(tempfile.mkdtemp(prefix="promptcache-rec-"))
    for provider in PROVIDERS:
        if not args or provider in args:
            print("recorded", record(provider))


if __name__ == "__main__":
    main(sys.argv[1:])
