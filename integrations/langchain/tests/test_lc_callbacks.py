"""PromptCacheCallbackHandler: observation only, on real chat models over the emulator."""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import has_clock, make_model, stamp, system_text
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage
from promptcache_langchain import (
    CachingChatModel,
    PromptCacheCallbackHandler,
    PromptCacheMiddleware,
    get_cache_metrics_callback,
)

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics
from promptcache.stats import recorder_for

# The shared fixtures, registered here: no conftest.py, which would collide with other
# integrations' conftest.py files when their test folders run in one pytest session.
airline_policy, emulator = shared.airline_policy, shared.emulator


async def test_shadow_records_without_changing_requests(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache()
    handler = PromptCacheCallbackHandler(cache)
    model = make_model("anthropic", emulator.anthropic_base_url, "k")
    messages = [SystemMessage(stamp(airline_policy, 0)), HumanMessage("Hi, I need to change a flight.")]
    config: Any = {
        "callbacks": [handler],
        "tags": ["support"],
        "metadata": {"tenant_id": "acme", "flow": "x"},
    }
    model.invoke(messages, config)
    # The clock moved: the shadow plan would move it out of the prefix; the request keeps it.
    await model.ainvoke(
        [SystemMessage(stamp(airline_policy, 5)), HumanMessage("Hi, I need to cancel.")], config
    )
    # Nothing changed on the wire: no breakpoints, the clock line still in the system prompt.
    for body in emulator.requests:
        assert "cache_control" not in str(body) and has_clock(system_text(body))
    first, second = handler.records
    assert first.run_id != second.run_id and first.tags == ["support"] and first.metadata["flow"] == "x"
    assert first.tenant == "acme" and not first.applied and first.error is None
    assert first.plan["mode"] == "shadow" and second.plan["relocated_values"] >= 1
    assert first.plan["hints"] == [] or all(h["kind"] for h in first.plan["hints"])
    assert first.explain == "first request of this prefix family: nothing cached yet"
    assert second.explain is not None and "first request" not in second.explain
    for rec, usage in zip(handler.records, emulator.usages, strict=True):
        assert rec.usage is not None and rec.usage.input_tokens == usage.input_tokens
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 2
    assert handler.cache_metrics.calls == 2


def test_calls_already_under_promptcache_are_not_counted_twice(emulator: Any, airline_policy: str) -> None:
    cache = PromptCache()
    handler = PromptCacheCallbackHandler(cache)
    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), cache)
    model.invoke(
        [SystemMessage(airline_policy), HumanMessage("hello")],
        {"callbacks": [handler], "configurable": {"tenant_id": "acme"}},
    )
    (rec,) = handler.records
    assert rec.applied and rec.plan["prefix_key"] and rec.tenant == "acme"
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 1


def test_missing_tenant_is_recorded_not_raised(emulator: Any) -> None:
    cache = PromptCache({"require_tenant": True})
    handler = PromptCacheCallbackHandler(cache)
    make_model("openai", emulator.openai_base_url, "k").invoke("hi", {"callbacks": [handler]})
    (rec,) = handler.records
    assert rec.error is not None and "requires a tenant" in rec.error and rec.plan == {}
    assert "config={'metadata': {'tenant_id': ...}}" in rec.error  # the fix, named
    assert recorder_for(cache).snapshot().total.calls == 0


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_handler_with_the_middleware_records_each_call_once_as_applied(
    emulator: Any, airline_policy: str, use_async: bool
) -> None:
    # Issue 20, item 3: PromptCacheMiddleware and PromptCacheCallbackHandler on one agent.
    cache = PromptCache()
    handler = PromptCacheCallbackHandler(cache)
    agent: Any = create_agent(
        make_model("anthropic", emulator.anthropic_base_url, "k"),
        [],
        system_prompt=airline_policy,
        middleware=[PromptCacheMiddleware(cache)],
    )
    # The tenant where the docs put it, and in the metadata (which the handler also reads).
    config: Any = {
        "callbacks": [handler],
        "configurable": {"tenant_id": "acme"},
        "metadata": {"tenant_id": "acme"},
    }
    state: dict[str, Any] = {"messages": [HumanMessage("Hi, I need to change a flight.")]}
    for question in (None, "And my seat?"):
        if question is not None:
            state = {**state, "messages": [*state["messages"], HumanMessage(question)]}
        state = await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)

    billed = len(emulator.requests)
    assert billed == 2
    assert len(handler.records) == billed
    for rec in handler.records:
        assert rec.applied and rec.plan["mode"] == cache.mode != "shadow"
        assert rec.tenant == "acme" and rec.plan["prefix_key"]
    # One identity per call: the handler's figures and the agent's channel name the same calls.
    metrics: CacheMetrics = state["cache_metrics"]
    assert set(handler.cache_metrics.records) == set(metrics.records)
    assert handler.cache_metrics.calls == metrics.calls == billed
    assert handler.cache_metrics.input_tokens == sum(u.input_tokens for u in emulator.usages)
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed


def test_a_caching_chat_model_inside_the_middleware_is_recorded_once(
    emulator: Any, airline_policy: str
) -> None:
    # The agent's model is itself a CachingChatModel: it records the call; the middleware and
    # the handler name the same call and feed nothing twice.
    cache = PromptCache()
    handler = PromptCacheCallbackHandler(cache)
    model = CachingChatModel(make_model("openai", emulator.openai_base_url, "k"), cache)
    agent: Any = create_agent(
        model, [], system_prompt=airline_policy, middleware=[PromptCacheMiddleware(cache)]
    )
    out = agent.invoke(
        {"messages": [HumanMessage("Hi, I need to change a flight.")]},
        {"callbacks": [handler], "configurable": {"tenant_id": "acme"}},
    )
    assert len(emulator.requests) == 1
    metrics: CacheMetrics = out["cache_metrics"]
    (rec,) = handler.records
    assert rec.applied and rec.figures is not None
    assert list(metrics.records) == [rec.figures.call_id]
    assert metrics.calls == handler.cache_metrics.calls == 1
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 1


def test_cache_metrics_callback_names_the_middleware_calls_like_the_channel(
    emulator: Any, airline_policy: str
) -> None:
    # get_cache_metrics_callback() sees the middleware's calls while its call context is current.
    cache = PromptCache()
    agent: Any = create_agent(
        make_model("anthropic", emulator.anthropic_base_url, "k"),
        [],
        system_prompt=airline_policy,
        middleware=[PromptCacheMiddleware(cache)],
    )
    with get_cache_metrics_callback() as cb:
        out = agent.invoke({"messages": [HumanMessage("Hi")]}, {"configurable": {"tenant_id": "acme"}})
    assert len(emulator.requests) == 1
    assert cb.cache_metrics == out["cache_metrics"] and cb.cache_metrics.calls == 1
