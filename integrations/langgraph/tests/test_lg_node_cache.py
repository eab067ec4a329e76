"""LangGraph's node cache with ``tenant_cache_key()``, as documented (issue 20, item 5).

Real ``StateGraph``s with ``CachePolicy`` and LangGraph's ``InMemoryCache``; the node calls a
real ``ChatOpenAI`` (wrapped in ``CachingChatModel``) served by the emulator, so a cache hit is
a model call that did not reach the provider.
"""

from __future__ import annotations

from typing import Any, NotRequired

import fixtures_lc as shared
import lc_tests_path  # noqa: F401  (must come before the shared helpers)
import pytest
from helpers_lc import make_model
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import CachePolicy
from promptcache_langchain import CachingChatModel
from promptcache_langgraph import CacheMetricsState, cache_node, tenant_cache_key

from promptcache import PromptCache

airline_policy, emulator = shared.airline_policy, shared.emulator


class State(MessagesState, CacheMetricsState):
    tenant_id: NotRequired[str]


def _graph(emu: Any, policy: str, cache: PromptCache, **compile_kw: Any) -> Any:
    model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)

    def answer(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke([SystemMessage(policy), *state["messages"]])]}

    async def aanswer(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke([SystemMessage(policy), *state["messages"]])]}

    g = StateGraph(State)
    # A sync and an async node: LangGraph runs the async one under ainvoke.
    g.add_node("answer", cache_node(answer, cache), cache_policy=CachePolicy(key_func=tenant_cache_key()))
    g.add_node("aanswer", cache_node(aanswer, cache), cache_policy=CachePolicy(key_func=tenant_cache_key()))
    g.add_conditional_edges(START, lambda s: "aanswer" if s.get("tenant_id") == "async" else "answer")
    return g.compile(cache=InMemoryCache(), **compile_kw)


# The README pattern: plain tuples, no ids; add_messages gives each one a random id per run.
QUESTION: dict[str, Any] = {"messages": [("user", "How many free bags does a gold member get?")]}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "carrier",
    [
        lambda t: ({"configurable": {"tenant_id": t}}, {}),
        lambda t: ({"metadata": {"tenant_id": t}}, {}),
        lambda t: ({}, {"context": {"tenant_id": t}}),
    ],
    ids=["configurable", "metadata", "runtime-context"],
)
async def test_a_tenant_only_in_the_run_config_keys_the_node_cache(
    emulator: Any, airline_policy: str, carrier: Any, use_async: bool
) -> None:
    cache = PromptCache()
    graph = _graph(emulator, airline_policy, cache)
    outs = []
    for tenant in ("acme", "acme", "globex", "globex"):
        config, kw = carrier(tenant)
        state = dict(QUESTION, tenant_id="async") if use_async else QUESTION
        if use_async:
            outs.append(await graph.ainvoke(state, config, **kw))
        else:
            outs.append(graph.invoke(state, config, **kw))
    # Two identical runs per tenant: the second is served by the node cache, the other tenant
    # gets its own entry (its own model call), never acme's answer.
    assert len(emulator.requests) == 2
    assert outs[1]["messages"][-1].content == outs[0]["messages"][-1].content
    assert {r.tenant for r in outs[3]["cache_metrics"].records.values()} == {"globex"}
    assert cache.stats().total.calls == 2


def test_messages_are_keyed_on_content_not_on_ids(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache()
    graph = _graph(emulator, airline_policy, cache)
    cfg: Any = {"configurable": {"tenant_id": "acme"}}
    graph.invoke({"messages": [HumanMessage("Can I change my flight?")]}, cfg)
    # Same words, other message ids (given or made up by add_messages): the same key.
    graph.invoke({"messages": [HumanMessage("Can I change my flight?", id="m-1")]}, cfg)
    graph.invoke({"messages": [("user", "Can I change my flight?")]}, cfg)
    assert len(emulator.requests) == 1
    # Other words: another key.
    graph.invoke({"messages": [HumanMessage("Can I cancel my flight?")]}, cfg)
    assert len(emulator.requests) == 2


def test_no_tenant_anywhere_is_refused_naming_the_fix(emulator: Any, airline_policy: str) -> None:
    graph = _graph(emulator, airline_policy, PromptCache())
    with pytest.raises(ValueError, match=r"tenant_cache_key: no tenant .*configurable"):
        graph.invoke(QUESTION)
    assert emulator.requests == []


class _Handler:
    """A node that is a callable object: LangGraph's own namespace is "__dynamic__" for it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.runs = 0

    def __call__(self, state: State) -> dict[str, Any]:
        self.runs += 1
        return {"messages": [("ai", self.text)]}


class _HandlerA(_Handler):
    pass


class _HandlerB(_Handler):
    pass


def _handler_graph(handler: _Handler, shared_cache: InMemoryCache, **compile_kw: Any) -> Any:
    g = StateGraph(State)
    g.add_node("handle", handler, cache_policy=CachePolicy(key_func=tenant_cache_key()))
    g.add_edge(START, "handle")
    return g.compile(cache=shared_cache, **compile_kw)


def test_graphs_sharing_a_cache_keep_their_own_entries() -> None:
    # LangGraph #8753: two graphs, one cache, same node name, callable-object nodes.
    shared_cache = InMemoryCache()
    a, b = _HandlerA("from graph A"), _HandlerB("from graph B")
    cfg: Any = {"configurable": {"tenant_id": "acme"}}
    out_a = _handler_graph(a, shared_cache).invoke(QUESTION, cfg)
    out_b = _handler_graph(b, shared_cache).invoke(QUESTION, cfg)
    assert out_a["messages"][-1].content == "from graph A"
    assert out_b["messages"][-1].content == "from graph B"
    assert (a.runs, b.runs) == (1, 1)
    # The same graph again is served from the cache.
    _handler_graph(a, shared_cache).invoke(QUESTION, cfg)
    assert a.runs == 1

    # Two graphs of one class told apart by their names (compile(name=...)).
    c, d = _HandlerA("first"), _HandlerA("second")
    first = _handler_graph(c, shared_cache, name="first").invoke(QUESTION, cfg)
    second = _handler_graph(d, shared_cache, name="second").invoke(QUESTION, cfg)
    assert (first["messages"][-1].content, second["messages"][-1].content) == ("first", "second")


async def test_a_cached_node_in_a_subgraph_reads_the_parent_run_config() -> None:
    # LangGraph computes the key inside the subgraph's own run: its config is the parent's.
    handler = _HandlerA("from the subgraph")
    sub = StateGraph(State)
    sub.add_node("handle", handler, cache_policy=CachePolicy(key_func=tenant_cache_key()))
    sub.add_edge(START, "handle")
    parent = StateGraph(State)
    parent.add_node("sub", sub.compile(cache=InMemoryCache()))
    parent.add_edge(START, "sub")
    graph = parent.compile(cache=InMemoryCache())
    out = await graph.ainvoke(QUESTION, {"configurable": {"tenant_id": "acme"}})
    assert out["messages"][-1].content == "from the subgraph"
    with pytest.raises(ValueError, match="tenant_cache_key: no tenant"):
        await graph.ainvoke(QUESTION)
    assert handler.runs == 1
