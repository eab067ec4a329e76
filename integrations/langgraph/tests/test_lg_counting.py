"""Every billed model call is counted exactly once in a graph (issue 20, item 3).

Each test compares the records in ``cache_metrics`` and ``cache.stats()`` with the HTTP requests
the provider emulator actually served: a ``create_agent`` agent with ``PromptCacheMiddleware``
run inside a ``cache_node`` node, an ``interrupt()`` after a billed call, and a run served from
LangGraph's node cache.
"""

from __future__ import annotations

from typing import Any

import lc_tests_path  # noqa: F401  (puts the LangChain tests' helpers on sys.path: first)

# isort: split
import fixtures_lc as shared
import pytest
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from promptcache_langchain import PromptCacheMiddleware
from promptcache_langgraph import CacheMetrics, CacheMetricsState, cache_node

from promptcache import PromptCache
from promptcache.stats import recorder_for

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

airline_policy = shared.airline_policy
CONFIG: Any = {"configurable": {"tenant_id": "acme"}}


class State(MessagesState, CacheMetricsState):
    pass


@tool
def get_reservation_details(reservation_id: str) -> str:
    """Get the details of a reservation."""
    return f'{{"reservation_id": "{reservation_id}", "total_baggages": 1}}'


# Two model calls per agent run: a tool call, then the answer.
AGENT_SCRIPT = [
    {"tool_calls": [{"name": "get_reservation_details", "arguments": {"reservation_id": "ZFA04Y"}}]},
    {"text": "Reservation ZFA04Y has one checked bag."},
]


@pytest.mark.parametrize("hand_back", [False, True], ids=["messages", "messages+metrics"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_agent_with_middleware_inside_cache_node(
    airline_policy: str, use_async: bool, hand_back: bool
) -> None:
    cache = PromptCache()
    with Emulator(script=AGENT_SCRIPT) as emu:
        agent: Any = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            [get_reservation_details],
            system_prompt=airline_policy,
            middleware=[PromptCacheMiddleware(cache)],
        )

        def pick(out: dict[str, Any]) -> dict[str, Any]:
            update: dict[str, Any] = {"messages": out["messages"]}
            if hand_back:  # the agent's own channel handed to the graph's, as a user may
                update["cache_metrics"] = out["cache_metrics"]
            return update

        def node(state: State) -> dict[str, Any]:
            return pick(agent.invoke({"messages": state["messages"]}))

        async def anode(state: State) -> dict[str, Any]:
            return pick(await agent.ainvoke({"messages": state["messages"]}))

        g = StateGraph(State)
        g.add_node("support", cache_node(anode if use_async else node, cache))
        g.add_edge(START, "support")
        graph = g.compile()
        question = {"messages": [HumanMessage("How many bags are on reservation ZFA04Y?")]}
        out = await graph.ainvoke(question, CONFIG) if use_async else graph.invoke(question, CONFIG)

        billed = len(emu.requests)
        assert billed == 2
        m: CacheMetrics = out["cache_metrics"]
        assert m.calls == billed and len(m.records) == billed
        assert m.input_tokens == sum(u.input_tokens for u in emu.usages)
        # The ids are the middleware's own: the ones response_metadata["promptcache"] names.
        answers = [msg for msg in out["messages"] if msg.type == "ai"]
        assert set(m.records) == {a.response_metadata["promptcache"]["call_id"] for a in answers}
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed
