"""End to end through LlamaIndex itself: a ``VectorStoreIndex`` query engine (local embedding) and a
``FunctionAgent`` workflow with the tau-bench airline tools, both set up with ``enable(cache)``,
real OpenAI/Anthropic LLM objects talking to the emulator over loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from li_fixtures import (
    AIRLINE_POLICY,
    AirlineBackend,
    HashEmbedding,
    airline_tools,
    anthropic_llm,
    gemini_llm,
    openai_llm,
    responses_llm,
)
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index_instrumentation.dispatcher import instrument_tags
from promptcache_llamaindex import (
    CachingLLM,
    CachingRetriever,
    RetrievalCacheEvent,
    cache_tool,
    disable,
    enable,
)
from pydantic import Field

from promptcache import PromptCache
from promptcache.artifacts import LookupReason, ToolOutputCache, open_store
from promptcache.lab.emulate import Emulator
from promptcache.stats import recorder_for

FAQ = [
    "Gold members get three free checked bags on every flight, silver members two, regular members one.",
    "Basic economy tickets cannot be modified; economy and business tickets can change flights.",
    "Travel insurance costs 30 dollars per passenger and allows a full refund for health reasons.",
    "A reservation can be cancelled within 24 hours of booking for a full refund.",
    "Pets are not allowed in the cabin; service animals travel free of charge.",
]


class _Retrievals(BaseEventHandler):
    """Keeps the retrieval events dispatched on LlamaIndex's own dispatcher."""

    events: list[RetrievalCacheEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RetrievalCacheEvent):
            self.events.append(event)


def _llm(provider: str, emu: Emulator, **kw: Any) -> Any:
    if provider == "gemini":
        return gemini_llm(emu, **kw)
    # gpt-5.6-sol (explicit breakpoints, writes billed) through OpenAI and OpenAIResponses.
    if provider == "openai_gpt56":
        return openai_llm(emu, model="gpt-5.6-sol", **kw)
    if provider == "responses_gpt56":
        return responses_llm(emu, model="gpt-5.6-sol", **kw)
    return anthropic_llm(emu, **kw) if provider == "anthropic" else openai_llm(emu, **kw)


def _assert_hinted(provider: str, body: dict[str, Any]) -> None:
    if provider == "anthropic":
        assert isinstance(body["system"], list) and body["system"][-1]["cache_control"] == {
            "type": "ephemeral"
        }
    else:
        assert body["prompt_cache_key"].startswith("pc-")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_vector_index_query_engine_with_enable(
    provider: str, emu: Emulator, cache: PromptCache
) -> None:
    Settings.embed_model = HashEmbedding()
    original = _llm(provider, emu, system_prompt=AIRLINE_POLICY)
    Settings.llm = original
    handler = enable(cache)
    assert isinstance(Settings.llm, CachingLLM) and Settings.llm.inner is original

    index = VectorStoreIndex.from_documents([Document(text=t) for t in FAQ])
    retriever = CachingRetriever(
        index.as_retriever(similarity_top_k=2), cache, index_version="faq-v1", store="memory://"
    )
    engine = RetrieverQueryEngine.from_args(retriever)
    streaming = RetrieverQueryEngine.from_args(retriever, streaming=True)
    seen = _Retrievals()
    get_dispatcher().add_event_handler(seen)
    question = "How many free checked bags does a gold member get?"
    with instrument_tags({"tenant_id": "acme"}):
        first = engine.query(question)
        second = await engine.aquery(question)
        streamed = streaming.query(question)
        text = "".join(streamed.response_gen)
    assert str(first) and str(second) and text
    assert "Gold members" in json.dumps(emu.requests[0]), "the retrieved passage reached the model"
    assert len(emu.requests) == 3
    for body in emu.requests:
        _assert_hinted(provider, body)
    assert emu.requests[2]["stream"] is True
    # The policy prefix is read back from the provider cache from the second call on, streamed too.
    usages = [r for r in handler.cache_metrics.records.values() if r.kind == "model"]
    assert len(usages) == 3 and sorted(u.cache_read_tokens > 1000 for u in usages) == [False, True, True]
    # Retrieval: computed once, then served by promptcache's retrieval cache for the same tenant.
    retrievals = [r for r in handler.cache_metrics.records.values() if r.kind == "retrieval"]
    assert retrievals and handler.cache_metrics.local_hits >= 1
    assert retriever.retrieval_cache.stats().hits == 2
    # The retrieval events say how each was answered as the enum value, and the same in words.
    assert [(e.reason, e.hit) for e in seen.events] == [
        (LookupReason.STORED, False), (LookupReason.HIT, True), (LookupReason.HIT, True),
    ]  # fmt: skip
    assert seen.events[1].why == "hit in l1"
    stats = recorder_for(cache).snapshot().for_tenant("acme")
    assert (stats.calls, stats.input_tokens, stats.cache_read_tokens) == (
        handler.cache_metrics.calls,
        handler.cache_metrics.input_tokens,
        handler.cache_metrics.cache_read_tokens,
    )
    disable()
    assert Settings.llm is original


def _agent_script() -> list[dict[str, Any]]:
    get = {"name": "get_reservation_details", "arguments": {"reservation_id": "ZFA04Y"}}
    update = {
        "name": "update_reservation_baggages",
        "arguments": {
            "reservation_id": "ZFA04Y",
            "total_baggages": 2,
            "nonfree_baggages": 0,
            "payment_id": "credit_card_4421486",
        },
    }
    return [
        {"tool_calls": [get]},
        {"tool_calls": [get]},  # the same read again: served from the tool cache
        {"tool_calls": [update]},  # a write: invalidates reservation:ZFA04Y
        {"tool_calls": [get]},  # read after the write: fresh
        {"text": "Your reservation ZFA04Y now has 2 checked bags."},
    ]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_function_agent_airline_tools(provider: str, cache: PromptCache) -> None:
    backend = AirlineBackend()
    raw_tools = airline_tools(backend)
    shared = ToolOutputCache(open_store("memory://"), cache.policy)
    tools = [
        cache_tool(
            raw_tools["get_reservation_details"],
            cache,
            side_effect="read_only",
            tags=["reservation:{reservation_id}"],
            tool_cache=shared,
        ),
        cache_tool(
            raw_tools["update_reservation_baggages"],
            cache,
            side_effect="idempotent_write",
            invalidates=["reservation:{reservation_id}"],
            tool_cache=shared,
        ),
        # Undeclared tools are side_effecting: wrapped, but never served from cache.
        *(
            cache_tool(t, cache, tool_cache=shared)
            for n, t in raw_tools.items()
            if not n.endswith("_baggages") and n != "get_reservation_details"
        ),
    ]
    with Emulator(script=_agent_script()) as emu:
        Settings.llm = _llm(provider, emu)
        handler = enable(cache)
        agent = FunctionAgent(tools=tools, system_prompt=AIRLINE_POLICY)
        with instrument_tags({"tenant_id": "mia"}):
            result = await agent.run(user_msg="Please add one checked bag to reservation ZFA04Y.")
        requests = list(emu.requests)
    assert "2 checked bags" in str(result)
    reads = [kw for name, kw in backend.calls if name == "get_reservation_details"]
    assert len(reads) == 2, "the second identical read was served from cache; the one after the write was not"
    assert backend.bags["ZFA04Y"] == 2
    assert len(requests) == 5
    for body in requests:
        _assert_hinted(provider, body)
    # Tools are byte-identical on every turn: one stable cached prefix. (LlamaIndex sends
    # them in a stable order, so promptcache leaves that order as it is.)
    tool_key = "tools"
    names = [t["name"] if provider == "anthropic" else t["function"]["name"] for t in requests[0][tool_key]]
    assert len(set(names)) == 14
    assert all(json.dumps(r[tool_key]) == json.dumps(requests[0][tool_key]) for r in requests)
    if provider == "anthropic":
        assert requests[0][tool_key][-1]["cache_control"] == {"type": "ephemeral"}
    m = handler.cache_metrics
    tool_records = [r for r in m.records.values() if r.kind == "tool"]
    assert sum(r.local_hit for r in tool_records) == 1
    model_records = [r for r in m.records.values() if r.kind == "model"]
    assert len(model_records) == 5 and sum(r.cache_read_tokens > 1000 for r in model_records) >= 3
    stats = recorder_for(cache).snapshot().for_tenant("mia")
    assert stats.calls == 5 and stats.cache_read_tokens == m.cache_read_tokens
