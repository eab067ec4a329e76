"""A ``cache_metrics`` value read back from a real checkpointer is usable as is (issue 20, item 7).

LangGraph stores the channel as the plain map it is; the channel (``CacheMetricsChannel``)
validates what it restores, so ``get_state(cfg).values["cache_metrics"]`` is a ``CacheMetrics``
with ``.summary()``, from ``InMemorySaver`` and from an on-disk ``SqliteSaver`` alike, for a
hand-built ``StateGraph`` and for ``create_agent`` with ``PromptCacheMiddleware``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fixtures_lc as shared
import lc_tests_path  # noqa: F401  (must come before the shared helpers)
import pytest
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from promptcache_langchain import PromptCacheMiddleware
from promptcache_langgraph import CacheMetrics, CacheMetricsState, merge_cache_metrics

from promptcache import PromptCache
from promptcache.figures import Totals, figures_from_usage
from promptcache.stats import recorder_for
from promptcache.usage import CacheUsage

airline_policy, emulator = shared.airline_policy, shared.emulator


class State(CacheMetricsState):
    turn: int


def _model_call(state: State) -> dict[str, Any]:
    # What cache_node writes for one model call: that call's figures only, under its own id.
    turn = state.get("turn", 0) + 1
    usage = CacheUsage(
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=2073,
        cache_read_tokens=0 if turn == 1 else 2056,
        cache_write_tokens=2056 if turn == 1 else 0,
        cache_write_tokens_by_ttl={"1h": 2056} if turn == 1 else {},
        output_tokens=40,
    )
    f = figures_from_usage(usage, call_id=f"run-{turn}", tenant="acme")
    return {"turn": turn, "cache_metrics": CacheMetrics.of_call(f)}


def _builder() -> StateGraph[State]:
    g = StateGraph(State)
    g.add_node("agent", _model_call)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g


@pytest.fixture(params=["memory", "sqlite"])
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointSaver[Any]]:
    """A real checkpointer: LangGraph's in-memory one, or SQLite on a file."""
    if request.param == "memory":
        yield InMemorySaver()
        return
    conn = sqlite3.connect(tmp_path / "checkpoints.sqlite", check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


@pytest.fixture
async def async_saver(tmp_path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    """SQLite on a file, through the async saver."""
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.sqlite")) as s:
        yield s


def test_a_checkpointed_value_is_typed_as_is(saver: BaseCheckpointSaver[Any]) -> None:
    config: Any = {"configurable": {"thread_id": "acme-1"}}
    first = _builder().compile(checkpointer=saver).invoke({"turn": 0}, config)
    assert first["cache_metrics"].calls == 1

    # Another graph over the same checkpointer (another process, in production) reads the
    # thread back: the value is typed, with the figures it was stored with.
    graph = _builder().compile(checkpointer=saver)
    stored = graph.get_state(config).values["cache_metrics"]
    assert type(stored) is CacheMetrics
    assert stored.summary() == first["cache_metrics"].summary()
    assert stored.records["run-1"].cache_write_tokens_by_ttl == {"1h": 2056}
    # Still plain data to anything that serializes it.
    assert dict(stored) == first["cache_metrics"].model_dump()
    history = [s.values.get("cache_metrics") for s in graph.get_state_history(config)]
    assert all(v is None or type(v) is CacheMetrics for v in history)

    # The next turn's reducer merges the restored value with the new record.
    second = graph.invoke({}, config)
    m = second["cache_metrics"]
    assert isinstance(m, CacheMetrics)
    assert (m.calls, m.cache_read_tokens, m.cache_write_tokens) == (2, 2056, 2056)
    assert m.totals.cache_write_tokens_by_ttl == {"1h": 2056}
    # Merging the read-back first turn again adds nothing: the reducer is a union of records.
    assert merge_cache_metrics(m, stored) == m and merge_cache_metrics(stored, m).summary() == m.summary()

    again = graph.get_state(config).values["cache_metrics"]
    assert again.summary() == m.summary()
    assert Totals.model_validate(again.totals.model_dump()) == m.totals


async def test_an_async_sqlite_checkpoint_is_typed_as_is(async_saver: AsyncSqliteSaver) -> None:
    config: Any = {"configurable": {"thread_id": "acme-2"}}
    graph = _builder().compile(checkpointer=async_saver)
    await graph.ainvoke({"turn": 0}, config)
    await graph.ainvoke({}, config)
    stored = (await graph.aget_state(config)).values["cache_metrics"]
    assert type(stored) is CacheMetrics
    assert stored.summary()["calls"] == 2 and stored.cache_read_tokens == 2056


def test_an_agent_state_read_back_from_a_checkpointer(
    saver: BaseCheckpointSaver[Any], emulator: Any, airline_policy: str
) -> None:
    cache = PromptCache()
    agent = create_agent(
        make_model("openai", emulator.openai_base_url, "k"),
        tools=[],
        system_prompt=airline_policy,
        middleware=[PromptCacheMiddleware(cache)],
        checkpointer=saver,
    )
    cfg: Any = {"configurable": {"thread_id": "t-1", "tenant_id": "acme"}}
    agent.invoke({"messages": [HumanMessage("Can I change my flight?")]}, cfg)
    out = agent.invoke({"messages": [HumanMessage("And my seat?")]}, cfg)

    stored = agent.get_state(cfg).values["cache_metrics"]
    assert type(stored) is CacheMetrics
    summary = stored.summary()
    assert summary == out["cache_metrics"].summary()
    # The figures are the provider's: two billed calls, the second one reading the cached prefix.
    assert summary["calls"] == 2 == len(emulator.usages)
    assert summary["input_tokens"] == sum(u.input_tokens for u in emulator.usages)
    assert summary["cache_read_tokens"] == sum(u.cache_read_tokens for u in emulator.usages) > 0
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 2
