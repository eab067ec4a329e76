"""One tenant rule and one way to read the figures, on real LangChain objects (issue 20, items 6 and 7).

Real ``ChatOpenAI``/``ChatAnthropic`` clients talk to the emulator; agents are real
``create_agent`` agents, chains real LCEL chains.
"""

from __future__ import annotations

import warnings
from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from promptcache_langchain import (
    CachingChatModel,
    PromptCacheCallbackHandler,
    PromptCacheMiddleware,
    get_cache_metrics_callback,
)

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics, merge_cache_metrics
from promptcache.stats import recorder_for

airline_policy, emulator = shared.airline_policy, shared.emulator


def _messages(policy: str, question: str) -> list[Any]:
    return [SystemMessage(policy), HumanMessage(question)]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_handler_sees_a_tenant_in_configurable(
    emulator: Any, airline_policy: str, use_async: bool
) -> None:
    # The docs' way: the tenant in configurable, the handler in callbacks. A callback is handed
    # the run's metadata only; the handler reads the enclosing run's config as the rule says.
    cache = PromptCache({"require_tenant": True})
    handler = PromptCacheCallbackHandler(cache)
    agent = create_agent(
        make_model("openai", emulator.openai_base_url, "k"), tools=[], system_prompt=airline_policy
    )
    chain = RunnableLambda(lambda q: [HumanMessage(q)]) | make_model(
        "anthropic", emulator.anthropic_base_url, "k"
    )
    acme: Any = {"configurable": {"tenant_id": "acme"}, "callbacks": [handler]}
    globex: Any = {"callbacks": [handler]}
    if use_async:
        await agent.ainvoke({"messages": [HumanMessage("Can I change my flight?")]}, acme)
        await chain.ainvoke("Can I change my flight?", acme)
        # The runtime context, the agent's other documented carrier.
        await agent.ainvoke({"messages": [HumanMessage("Hi")]}, globex, context={"tenant_id": "globex"})
    else:
        agent.invoke({"messages": [HumanMessage("Can I change my flight?")]}, acme)
        chain.invoke("Can I change my flight?", acme)
        agent.invoke({"messages": [HumanMessage("Hi")]}, globex, context={"tenant_id": "globex"})

    assert [(r.tenant, r.error) for r in handler.records] == [
        ("acme", None),
        ("acme", None),
        ("globex", None),
    ]
    assert all(r.plan.get("mode") == "shadow" for r in handler.records)
    stats = recorder_for(cache).snapshot()
    assert (stats.for_tenant("acme").calls, stats.for_tenant("globex").calls) == (2, 1)
    assert handler.cache_metrics.calls == 3 == len(emulator.usages)


def test_every_integration_reads_the_tenant_in_the_same_order(emulator: Any, airline_policy: str) -> None:
    # configurable and metadata both set: configurable wins, for the wrapper, the middleware and
    # the handler alike (the core's one order).
    cache = PromptCache()
    handler = PromptCacheCallbackHandler(PromptCache())
    cfg: Any = {
        "configurable": {"tenant_id": "acme"},
        "metadata": {"tenant_id": "globex"},
        "callbacks": [handler],
    }
    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), cache)
    reply = (RunnableLambda(lambda q: _messages(airline_policy, q)) | model).invoke("Hi", cfg)
    agent = create_agent(
        make_model("openai", emulator.openai_base_url, "k"),
        tools=[],
        system_prompt=airline_policy,
        middleware=[PromptCacheMiddleware(cache)],
    )
    out = agent.invoke({"messages": [HumanMessage("Hi")]}, {**cfg, "callbacks": []})
    shadow = PromptCacheCallbackHandler(PromptCache())
    RunnableLambda(lambda q: _messages(airline_policy, q)).pipe(
        make_model("openai", emulator.openai_base_url, "k")
    ).invoke("Hi", {**cfg, "callbacks": [shadow]})

    assert reply.response_metadata["promptcache"]["tenant"] == "acme"
    assert {r.tenant for r in out["cache_metrics"].records.values()} == {"acme"}
    assert [r.tenant for r in shadow.records] == ["acme"]
    assert recorder_for(cache).snapshot().for_tenant("globex").calls == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_get_cache_metrics_callback_collects_every_call_in_the_block(
    emulator: Any, airline_policy: str, provider: str
) -> None:
    base = emulator.openai_base_url if provider == "openai" else emulator.anthropic_base_url
    cache = PromptCache()
    model = CachingChatModel(make_model(provider, base, "k"), cache)
    question = _messages(airline_policy, "How many free bags does a gold member get?")
    cfg: Any = {"configurable": {"tenant_id": "acme"}}
    with get_cache_metrics_callback() as cb:
        model.invoke(question, cfg)
        await model.ainvoke(question, cfg)
        for _ in model.stream(question, cfg):
            pass
        async for _ in model.astream(question, cfg):
            pass
    model.invoke(question, cfg)  # after the block: not collected

    m = cb.cache_metrics
    assert isinstance(m, CacheMetrics)
    assert m.calls == 4 == len(emulator.usages) - 1
    usages = emulator.usages[:4]
    assert m.input_tokens == sum(u.input_tokens for u in usages)
    assert m.cache_read_tokens == sum(u.cache_read_tokens for u in usages) > 0
    assert {r.tenant for r in m.records.values()} == {"acme"}
    assert m.summary()["calls"] == 4 and m.cost_usd > 0
    # The same figures cache.stats() has for the five calls, less the one after the block.
    row = recorder_for(cache).snapshot().for_tenant("acme")
    assert row.calls == 5 and row.input_tokens == m.input_tokens + emulator.usages[4].input_tokens


def test_the_block_and_the_agent_state_count_each_call_once(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache()
    agent = create_agent(
        make_model("openai", emulator.openai_base_url, "k"),
        tools=[],
        system_prompt=airline_policy,
        middleware=[PromptCacheMiddleware(cache)],
    )
    cfg: Any = {"configurable": {"tenant_id": "acme"}}
    with get_cache_metrics_callback() as outer:
        first = agent.invoke({"messages": [HumanMessage("Can I change my flight?")]}, cfg)
        with get_cache_metrics_callback() as inner:
            second = agent.invoke({"messages": [HumanMessage("And my seat?")]}, cfg)

    assert inner.cache_metrics.calls == 1 and outer.cache_metrics.calls == 2
    # The block has the figures the agent state has, in the same form.
    both = merge_cache_metrics(first["cache_metrics"], second["cache_metrics"])
    assert outer.cache_metrics.summary() == both.summary()
    assert inner.cache_metrics.summary() == second["cache_metrics"].summary()
    assert outer.cache_metrics.cache_read_tokens > 0


def test_the_old_method_form_is_a_deprecated_alias(emulator: Any) -> None:
    handler = PromptCacheCallbackHandler(PromptCache())
    make_model("openai", emulator.openai_base_url, "k").invoke("hi", {"callbacks": [handler]})
    with pytest.warns(DeprecationWarning, match=r"\.cache_metrics"):
        old = handler.metrics()
    assert old == handler.cache_metrics and old.calls == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert handler.cache_metrics.summary()["calls"] == 1
