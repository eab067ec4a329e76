"""CachingLLM around real LlamaIndex OpenAI / OpenAIResponses / Anthropic LLMs, over loopback to the
provider emulator: exact request bodies, provider usage (streamed too), stats and events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from li_fixtures import AIRLINE_POLICY, anthropic_llm, openai_llm, responses_llm
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import ChatMessage
from llama_index_instrumentation.dispatcher import instrument_tags
from promptcache_llamaindex import CachingLLM, PromptCacheEventHandler

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.stats import recorder_for

CLOCK = "2024-05-15 15:00:00"


def _policy(minute: int = 0) -> str:
    """The airline policy as an app renders it: its clock line changes from call to call."""
    return AIRLINE_POLICY.replace(CLOCK, f"2024-05-15 15:{minute:02d}:00")


def _messages(
    question: str = "What is the baggage allowance for gold members?", minute: int = 0
) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=_policy(minute)), ChatMessage(role="user", content=question)]


def _snapshot(msgs: list[ChatMessage]) -> str:
    return json.dumps([m.model_dump(mode="json") for m in msgs], sort_keys=True)


def _assert_anthropic_body(body: dict[str, Any]) -> None:
    system = body["system"]
    assert isinstance(system, list), "the system prompt is sent as blocks, so it can carry a breakpoint"
    assert system[-1]["cache_control"] == {"type": "ephemeral"}


def _assert_clock_relocated(system_text: str, rest: str, minute: int) -> None:
    value = f"2024-05-15 15:{minute:02d}:00"
    assert value not in system_text, "the changing clock value is moved out of the cached prefix"
    assert value in rest and "volatile_context" in rest, "... into the labelled volatile section"


def _assert_openai_chat_body(body: dict[str, Any]) -> None:
    assert body["prompt_cache_key"].startswith("pc-")
    assert body["messages"][0]["role"] == "system" and body["messages"][-1]["role"] == "user"


def test_anthropic_sync_system_breakpoint_clock_relocated_and_cache_read(
    emu: Emulator, cache: PromptCache
) -> None:
    inner = anthropic_llm(emu, cache_idx=-1)  # LlamaIndex's own marker logic writes into messages
    llm = CachingLLM(inner, cache)
    calls = [_messages(minute=m) for m in (0, 5, 10)]
    before = [_snapshot(m) for m in calls]
    with instrument_tags({"tenant_id": "acme"}):
        out = [llm.chat(m) for m in calls]
    assert [_snapshot(m) for m in calls] == before, "the caller's messages are never mutated"
    assert len(emu.requests) == 3
    for body in emu.requests:
        _assert_anthropic_body(body)
    # Once the clock is seen changing it leaves the prefix: the system blocks stop changing.
    for body, minute in zip(emu.requests[1:], (5, 10), strict=True):
        _assert_clock_relocated(json.dumps(body["system"]), json.dumps(body["messages"]), minute)
    assert emu.requests[1]["system"] == emu.requests[2]["system"]
    metas = [r.additional_kwargs["promptcache"] for r in out]
    assert all(m["tenant"] == "acme" for m in metas)
    assert metas[0]["cache_write_tokens"] > 1000 and metas[0]["cache_read_tokens"] == 0
    assert metas[1]["relocated_values"] >= 1
    assert metas[2]["cache_read_tokens"] > 1000, "the third call reads the relocated, stable prefix"
    row = recorder_for(cache).snapshot().get("acme", "claude-sonnet-4-5")
    assert row.calls == 3
    assert row.cache_read_tokens == sum(m["cache_read_tokens"] for m in metas)
    assert row.cache_write_tokens == sum(m["cache_write_tokens"] for m in metas)


def test_anthropic_model_outside_llamaindex_list_still_cached(emu: Emulator, cache: PromptCache) -> None:
    # LlamaIndex only marks models in ANTHROPIC_PROMPT_CACHING_SUPPORTED_MODELS; a dated/preview id
    # outside that list gets no marker from LlamaIndex itself.
    from llama_index.llms.anthropic.utils import is_anthropic_prompt_caching_supported_model

    model = "claude-sonnet-4-6"
    assert not is_anthropic_prompt_caching_supported_model(model)
    CachingLLM(anthropic_llm(emu, model=model), cache).chat(_messages())
    _assert_anthropic_body(emu.requests[0])


def test_anthropic_stream_reports_cache_reads(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(anthropic_llm(emu), cache)
    llm.chat(_messages())
    chunks = list(llm.stream_chat(_messages()))
    assert "".join(c.delta or "" for c in chunks)
    meta = chunks[-1].additional_kwargs["promptcache"]
    assert meta["cache_read_tokens"] > 1000, "streamed answers report cache reads too"
    # LlamaIndex's own streamed usage drops the cache fields; ours comes from the raw SSE events.
    assert "cache_read_input_tokens" not in json.dumps(chunks[-1].message.additional_kwargs.get("usage"))
    assert emu.requests[1]["stream"] is True
    _assert_anthropic_body(emu.requests[1])
    assert recorder_for(cache).snapshot().total.cache_read_tokens == meta["cache_read_tokens"]


async def test_anthropic_streams_report_cache_writes(emu: Emulator, cache: PromptCache) -> None:
    """A streamed first call writes the prefix: its last chunk and the stats say so, sync and async."""
    llm = CachingLLM(anthropic_llm(emu), cache)
    chunks = list(llm.stream_chat(_messages()))
    sync_meta = chunks[-1].additional_kwargs["promptcache"]
    emu.reset()  # a cold provider cache again
    gen = await llm.astream_chat(_messages())
    async_meta = [c async for c in gen][-1].additional_kwargs["promptcache"]
    for meta in (sync_meta, async_meta):
        assert meta["cache_write_tokens"] > 1000 and meta["cache_read_tokens"] == 0
    assert [u.cache_write_tokens for u in emu.usages if u] == [async_meta["cache_write_tokens"]]
    total = recorder_for(cache).snapshot().total
    assert total.cache_write_tokens == sync_meta["cache_write_tokens"] + async_meta["cache_write_tokens"]


async def test_anthropic_async_and_async_stream(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(anthropic_llm(emu), cache)
    with instrument_tags({"tenant_id": "globex"}):
        r = await llm.achat(_messages())
        gen = await llm.astream_chat(_messages())
        chunks = [c async for c in gen]
    assert r.additional_kwargs["promptcache"]["cache_write_tokens"] > 1000
    assert chunks[-1].additional_kwargs["promptcache"]["cache_read_tokens"] > 1000
    for body in emu.requests:
        _assert_anthropic_body(body)
    assert recorder_for(cache).snapshot().for_tenant("globex").calls == 2


def test_openai_chat_sync_stream_and_complete(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(openai_llm(emu), cache)
    msgs = _messages()
    before = _snapshot(msgs)
    llm.chat(msgs)
    chunks = list(llm.stream_chat(msgs))
    assert _snapshot(msgs) == before
    for body in emu.requests:
        _assert_openai_chat_body(body)
    llm.chat(_messages(minute=7))
    moved = emu.requests[2]["messages"]
    _assert_clock_relocated(moved[0]["content"], json.dumps(moved[1:]), 7)
    del emu.requests[2]
    # usage is requested for the stream so that cache reads can be reported
    assert emu.requests[1]["stream_options"] == {"include_usage": True}
    assert emu.requests[0]["prompt_cache_key"] == emu.requests[1]["prompt_cache_key"]
    assert chunks[-1].additional_kwargs["promptcache"]["cache_read_tokens"] >= 1024
    done = llm.complete("hello")
    assert done.additional_kwargs["promptcache"]["format"] == "openai-chat"
    assert recorder_for(cache).snapshot().total.calls == 4


async def test_openai_chat_async_stream(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(openai_llm(emu), cache)
    await llm.achat(_messages())
    gen = await llm.astream_chat(_messages())
    chunks = [c async for c in gen]
    assert chunks[-1].additional_kwargs["promptcache"]["cache_read_tokens"] >= 1024
    gen2 = await llm.astream_complete("hello")
    assert [c async for c in gen2][-1].additional_kwargs["promptcache"]["format"] == "openai-chat"
    for body in emu.requests[:2]:
        _assert_openai_chat_body(body)


def test_openai_responses_sync_and_stream(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(responses_llm(emu), cache)
    llm.chat(_messages())
    chunks = list(llm.stream_chat(_messages()))
    assert emu.paths == ["/v1/responses", "/v1/responses"]
    for body in emu.requests:
        assert body["prompt_cache_key"].startswith("pc-")
    assert chunks[-1].additional_kwargs["promptcache"]["cache_read_tokens"] >= 1024


def test_openai_responses_structured_predict_uses_parse_rewritten(cache: PromptCache) -> None:
    from llama_index.core.prompts import PromptTemplate
    from pydantic import BaseModel

    class Fare(BaseModel):
        route: str
        fare_usd: int

    with Emulator(script=[{"text": '{"route": "SFO-JFK", "fare_usd": 210}'}]) as emu:
        llm = CachingLLM(responses_llm(emu), cache, tenant="acme")
        fare = llm.structured_predict(
            Fare, PromptTemplate(AIRLINE_POLICY + "\nExtract the fare: {text}"), text="210"
        )
    assert fare == Fare(route="SFO-JFK", fare_usd=210)
    (body,) = emu.requests
    # OpenAIResponses' own responses.parse (a json_schema text format), rewritten on the way out.
    assert body["text"]["format"]["type"] == "json_schema" and body["tool_choice"] == "none"
    assert body["prompt_cache_key"].startswith("pc-")
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 1


def test_user_llm_object_untouched(emu: Emulator, cache: PromptCache) -> None:
    inner = anthropic_llm(emu, cache_idx=-1)
    client = inner._client
    CachingLLM(inner, cache).chat(_messages())
    assert inner._client is client and type(inner).__name__ == "Anthropic" and inner.cache_idx == -1
    inner.chat(_messages())  # the user's own object still sends LlamaIndex's unmodified request
    assert isinstance(emu.requests[1]["system"], str)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "responses"])
def test_user_llm_type_and_state_untouched_after_use(
    emu: Emulator, cache: PromptCache, provider: str
) -> None:
    import httpx

    http = httpx.Client()
    transport = http._transport
    make = {"openai": openai_llm, "anthropic": anthropic_llm, "responses": responses_llm}[provider]
    inner = make(emu, http_client=http) if provider != "anthropic" else make(emu)
    cls = type(inner)
    before = dict(inner.__dict__)
    private = dict(inner.__pydantic_private__ or {})
    llm = CachingLLM(inner, cache, tenant="acme")
    llm.chat(_messages())
    list(llm.stream_chat(_messages()))
    assert type(inner) is cls and type(inner).__mro__ == cls.__mro__
    assert inner.__dict__.keys() == before.keys()
    assert all(inner.__dict__[k] is v for k, v in before.items())
    assert (inner.__pydantic_private__ or {}).keys() == private.keys()
    assert all((inner.__pydantic_private__ or {})[k] is v for k, v in private.items())
    # The caller's httpx client keeps its own transport, open.
    assert http._transport is transport and not http.is_closed
    # The requests were rewritten all the same (the provider's caching hint is on them).
    hint = "cache_control" if provider == "anthropic" else "prompt_cache_key"
    assert all(hint in json.dumps(b) for b in emu.requests[-2:])


def test_tenant_required_refuses_before_sending(emu: Emulator) -> None:
    cache = PromptCache({"require_tenant": True})
    llm = CachingLLM(anthropic_llm(emu), cache)
    with pytest.raises(ValueError, match="tenant"):
        llm.chat(_messages())
    assert emu.requests == []
    with instrument_tags({"tenant_id": "acme"}):
        llm.chat(_messages())
    assert len(emu.requests) == 1


def test_handler_records_wrapped_and_observes_unwrapped(emu: Emulator, cache: PromptCache) -> None:
    handler = PromptCacheEventHandler(cache)
    get_dispatcher().add_event_handler(handler)
    wrapped = CachingLLM(openai_llm(emu), cache)
    plain = openai_llm(emu)
    with instrument_tags({"tenant_id": "acme"}):
        wrapped.chat(_messages())
        list(wrapped.stream_chat(_messages()))
        plain.chat(_messages("unwrapped"))
    m = handler.cache_metrics
    assert m.calls == 3, "one record per call: the inner LLM's own end events are not counted twice"
    assert {r.tenant for r in m.records.values()} == {"acme"}
    stats = recorder_for(cache).snapshot().for_tenant("acme")
    assert (stats.calls, stats.input_tokens, stats.cache_read_tokens) == (
        m.calls,
        m.input_tokens,
        m.cache_read_tokens,
    )
    assert "prompt_cache_key" not in emu.requests[2], "an unwrapped LLM is observed, not rewritten"
    # The figures' one name is the cache_metrics property; the old metrics property still works.
    with pytest.warns(DeprecationWarning, match=r"handler\.cache_metrics"):
        assert handler.metrics == m


def test_chat_with_tools_does_not_grow_caller_history(emu: Emulator, cache: PromptCache) -> None:
    from llama_index.core.tools import FunctionTool

    def get_fare(route: str) -> str:
        """Fare of a route."""
        return "210"

    llm = CachingLLM(openai_llm(emu), cache)
    history = [ChatMessage(role="system", content=AIRLINE_POLICY)]
    llm.chat_with_tools(
        [FunctionTool.from_defaults(fn=get_fare)], user_msg="fare SFO-JFK?", chat_history=history
    )
    assert len(history) == 1
    body = emu.requests[0]
    assert body["tools"][0]["function"]["name"] == "get_fare" and body["prompt_cache_key"].startswith("pc-")
