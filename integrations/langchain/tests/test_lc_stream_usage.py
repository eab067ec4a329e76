"""Streaming figures on any endpoint (issue 20, item 1).

LangChain leaves ``stream_usage`` off for a ``ChatOpenAI`` with a custom ``base_url`` (a proxy,
Azure, ``OPENAI_BASE_URL``), so the stream carries no usage chunk unless asked. promptcache's
transport asks for it (``stream_options.include_usage``) unless the caller said otherwise, so a
streamed call is counted like any other: in the message's ``usage_metadata``, in
``cache.stats()`` and in an agent's ``cache_metrics``. Real ``ChatOpenAI`` and ``create_agent``
against the provider emulator (a custom ``base_url``).
"""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
from helpers_lc import stamp
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from promptcache_langchain import CachingChatModel, PromptCacheMiddleware

from promptcache import PromptCache

airline_policy, emulator = shared.airline_policy, shared.emulator
CONFIG: Any = {"configurable": {"tenant_id": "acme"}}


def _model(emu: Any) -> ChatOpenAI:
    # No stream_usage: LangChain's default for a custom base_url, which is off.
    return ChatOpenAI(model="gpt-4o", api_key="key-stream", base_url=emu.openai_base_url, max_retries=0)


def test_a_custom_endpoint_stream_is_counted(airline_policy: str, emulator: Any) -> None:
    assert not _model(emulator).stream_usage  # the case this test is about
    cache = PromptCache()
    model = CachingChatModel(_model(emulator), cache)
    messages = [SystemMessage(stamp(airline_policy, 0)), HumanMessage("Hi, I need help.")]
    chunks = list(model.stream(messages, config=CONFIG))
    assert emulator.requests[-1]["stream_options"] == {"include_usage": True}
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["input_tokens"] == emulator.usages[-1].input_tokens
    row = cache.stats().for_tenant("acme")
    assert row.calls == 1 and row.input_tokens == emulator.usages[-1].input_tokens


async def test_a_custom_endpoint_astream_is_counted(airline_policy: str, emulator: Any) -> None:
    cache = PromptCache()
    model = CachingChatModel(_model(emulator), cache)
    messages = [SystemMessage(stamp(airline_policy, 1)), HumanMessage("Hi, I need help.")]
    chunks = [c async for c in model.astream(messages, config=CONFIG)]
    assert any(c.usage_metadata for c in chunks)
    assert cache.stats().for_tenant("acme").calls == 1


def test_the_callers_own_stream_options_are_kept(airline_policy: str, emulator: Any) -> None:
    model = CachingChatModel(_model(emulator), PromptCache())
    messages = [SystemMessage(stamp(airline_policy, 2)), HumanMessage("Hi, I need help.")]
    list(model.stream(messages, config=CONFIG, stream_options={"include_usage": False}))
    assert emulator.requests[-1]["stream_options"] == {"include_usage": False}


def test_an_agent_streaming_messages_counts_its_calls(airline_policy: str, emulator: Any) -> None:
    cache = PromptCache()
    agent: Any = create_agent(
        _model(emulator),
        tools=[],
        system_prompt=stamp(airline_policy, 3),
        middleware=[PromptCacheMiddleware(cache)],
    )
    parts = list(
        agent.stream(
            {"messages": [HumanMessage("Hi, I need help.")]}, CONFIG, stream_mode=["messages", "values"]
        )
    )
    final = [p for mode, p in parts if mode == "values"][-1]
    assert final["cache_metrics"].calls == 1
    assert cache.stats().for_tenant("acme").calls == 1


def test_the_middleware_needs_no_argument(airline_policy: str, emulator: Any) -> None:
    # One line, like LangChain's own caching middleware: a cache of its own on the embedded store.
    mw = PromptCacheMiddleware()
    agent: Any = create_agent(
        _model(emulator), tools=[], system_prompt=stamp(airline_policy, 4), middleware=[mw]
    )
    out = agent.invoke({"messages": [HumanMessage("Hi, I need help.")]}, CONFIG)
    assert out["cache_metrics"].calls == 1 and mw.cache.stats().for_tenant("acme").calls == 1
    assert "prompt_cache_key" in emulator.requests[-1]
