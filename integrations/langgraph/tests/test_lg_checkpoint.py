"""A ``cache_metrics`` value read back from a real checkpointer is usable as is (issue 20, item 7).

LangGraph stores the channel as the plain map it is and hands it back as a plain ``dict``: the
reducer merges that dict with the next run's records, and ``CacheMetrics.model_validate`` gives
the typed value with the same figures.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from promptcache_langgraph import CacheMetrics, CacheMetricsState, merge_cache_metrics

from promptcache.figures import Totals, figures_from_usage
from promptcache.usage import CacheUsage


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


def test_a_checkpointed_value_is_merged_and_validated_as_is() -> None:
    saver = InMemorySaver()
    config: Any = {"configurable": {"thread_id": "acme-1"}}
    first = _builder().compile(checkpointer=saver).invoke({"turn": 0}, config)
    assert first["cache_metrics"].calls == 1

    # Another graph over the same checkpointer (another process, in production) reads the
    # thread back: the channel is a plain dict, as the checkpointer stored it.
    graph = _builder().compile(checkpointer=saver)
    stored = graph.get_state(config).values["cache_metrics"]
    assert type(stored) is dict and stored == first["cache_metrics"]
    typed = CacheMetrics.model_validate(stored)
    assert typed.summary() == first["cache_metrics"].summary()
    assert typed.records["run-1"].cache_write_tokens_by_ttl == {"1h": 2056}

    # The next turn's reducer merges the read-back dict with the new record.
    second = graph.invoke({}, config)
    m = second["cache_metrics"]
    assert isinstance(m, CacheMetrics)
    assert (m.calls, m.cache_read_tokens, m.cache_write_tokens) == (2, 2056, 2056)
    assert m.totals.cache_write_tokens_by_ttl == {"1h": 2056}
    # Merging the read-back first turn again adds nothing: the reducer is a union of records.
    assert merge_cache_metrics(m, stored) == m and merge_cache_metrics(stored, m).summary() == m.summary()

    # The totals survive their own dump, as a checkpoint or the store would keep them.
    again = CacheMetrics.model_validate(graph.get_state(config).values["cache_metrics"])
    assert Totals.model_validate(again.totals.model_dump()) == m.totals
    assert again.summary() == m.summary()
