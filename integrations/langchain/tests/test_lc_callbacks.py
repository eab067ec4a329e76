"""PromptCacheCallbackHandler: observation only, on real chat models over the emulator."""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
from helpers_lc import has_clock, make_model, stamp, system_text
from langchain_core.messages import HumanMessage, SystemMessage
from promptcache_langchain import CachingChatModel, PromptCacheCallbackHandler

from promptcache import PromptCache
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
