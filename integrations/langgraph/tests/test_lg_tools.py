"""cached_tool_node in a hand-built StateGraph over the tau-bench airline tools; plain-data metrics channel.

The graph is the classic agent loop (model node, ``cached_tool_node``, ``tools_condition``); the
emulator plays the model with the same script as the ``create_agent`` test: read, read (served),
write (invalidates ``reservation:{id}``), read (fresh), two side-effecting calls.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import lc_tests_path  # noqa: F401  (puts the LangChain tests' helpers on sys.path)
import pytest
from airline_tools_lc import AIRLINE_SPECS, RES, SCRIPT, Backend, call
from helpers_lc import make_model
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import CachePolicy
from promptcache_langchain import cached_tool
from promptcache_langgraph import CacheMetrics, CacheMetricsState, CallFigures, cache_node, cached_tool_node

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator


class State(MessagesState, CacheMetricsState):
    pass


def _graph(emu: Any, tools: list[Any], cache: PromptCache, **node_kwargs: Any) -> Any:
    model = make_model("openai", emu.openai_base_url, "k").bind_tools(tools)

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def aagent(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    g = StateGraph(State)
    g.add_node("agent", RunnableLambda(agent, afunc=aagent))
    g.add_node("tools", cached_tool_node(tools, cache, **node_kwargs))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_state_graph_tool_node_caches_and_counts(tmp_path: Path, use_async: bool) -> None:
    backend, cache = Backend(), PromptCache(store=tmp_path / "pc")
    config = {"configurable": {"tenant_id": "acme"}}
    with Emulator(script=SCRIPT) as emu:
        graph = _graph(emu, backend.tools(), cache, tool_specs=AIRLINE_SPECS)
        state = {"messages": [HumanMessage("Add a bag to my reservation.")]}
        final = await graph.ainvoke(state, config) if use_async else graph.invoke(state, config)
    assert backend.calls["get_reservation_details"] == 2  # 3 reads, 1 served
    assert backend.calls["update_reservation_baggages"] == 1 and backend.calls["send_certificate"] == 2
    msgs = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert msgs[1].content == msgs[0].content and json.loads(msgs[3].content)["total_baggages"] == 2
    m = final["cache_metrics"]
    assert m.local_hits == 1 and m.tool_calls == 4
    assert {r.tenant for r in m.records.values()} == {"acme"}


async def test_state_graph_tenants_never_share_and_cached_tool_declarations_work(tmp_path: Path) -> None:
    backend, cache = Backend(), PromptCache(store=tmp_path / "pc")
    tools = {t.name: t for t in backend.tools()}
    declared = cached_tool(
        tools["get_reservation_details"], side_effect="read_only", tags=["reservation:{reservation_id}"]
    )
    script = [call("get_reservation_details", reservation_id=RES), {"text": "ok"}] * 3
    with Emulator(script=script) as emu:
        graph = _graph(emu, [declared], cache)  # no tool_specs: the declaration travels with the tool
        outs = [
            graph.invoke({"messages": [HumanMessage("res?")]}, {"configurable": {"tenant_id": t}})
            for t in ("acme", "globex", "acme")
        ]
    assert backend.calls["get_reservation_details"] == 2
    assert [o["cache_metrics"].local_hits for o in outs] == [0, 0, 1]
    assert [{r.tenant for r in o["cache_metrics"].records.values()} for o in outs] == [
        {"acme"},
        {"globex"},
        {"acme"},
    ]


def test_channel_is_plain_data_in_checkpoints_and_node_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No 'Deserializing unregistered type' on node-cache replays or checkpoint reads.

    The warning is logged once per process per type, so the test also checks the cause: the
    serialized channel value names no promptcache type at all.
    """
    figures = CallFigures(call_id="t1", kind="tool", tenant="acme", local_hit=True)
    calls: list[int] = []

    def node(state: State) -> dict[str, Any]:
        calls.append(1)
        return {"cache_metrics": CacheMetrics.of(figures)}

    g = StateGraph(State)
    g.add_node("n", cache_node(node, PromptCache(store=tmp_path / "pc")), cache_policy=CachePolicy())
    g.add_edge(START, "n")
    g.add_edge("n", END)
    graph = g.compile(cache=InMemoryCache(), checkpointer=InMemorySaver())
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = graph.invoke({"messages": []}, {"configurable": {"thread_id": "1", "tenant_id": "acme"}})
        replay = graph.invoke({"messages": []}, {"configurable": {"thread_id": "2", "tenant_id": "acme"}})
        stored = graph.get_state({"configurable": {"thread_id": "2"}}).values["cache_metrics"]
    assert calls == [1]  # the second run was a node-cache replay
    assert replay["cache_metrics"] == first["cache_metrics"] and replay["cache_metrics"].local_hits == 1
    text = caplog.text + " ".join(str(w.message) for w in caught)
    assert "unregistered type" not in text and "Blocked deserialization" not in text
    # What a checkpoint holds is a plain JSON-able mapping; the channel types it again on the
    # way back (issue 20, item 7).
    assert type(stored) is CacheMetrics and json.loads(json.dumps(stored)) == stored
    assert stored == first["cache_metrics"]
    kind, blob = JsonPlusSerializer().dumps_typed(first["cache_metrics"])
    assert kind == "msgpack" and b"promptcache" not in blob and b"CallFigures" not in blob
    back = JsonPlusSerializer(allowed_msgpack_modules=None).loads_typed((kind, blob))  # strict mode
    assert back == first["cache_metrics"]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_state_graph_records_declared_side_effecting_calls(tmp_path: Path, use_async: bool) -> None:
    # Issue 20, item 9: declared side-effecting calls run every time and are counted in tool_calls.
    backend, cache = Backend(), PromptCache(store=tmp_path / "pc")
    specs = {
        **AIRLINE_SPECS,
        "send_certificate": ToolSpec(name="send_certificate", side_effect="side_effecting"),
    }
    config = {"configurable": {"tenant_id": "acme"}}
    with Emulator(script=SCRIPT) as emu:
        graph = _graph(emu, backend.tools(), cache, tool_specs=specs)
        state = {"messages": [HumanMessage("Add a bag to my reservation.")]}
        final = await graph.ainvoke(state, config) if use_async else graph.invoke(state, config)
    assert backend.calls["send_certificate"] == 2
    msgs = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert msgs[4].content != msgs[5].content  # never served from cache
    m = final["cache_metrics"]
    assert m.tool_calls == 6 and m.local_hits == 1
