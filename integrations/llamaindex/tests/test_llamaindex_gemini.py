"""CachingLLM around LlamaIndex's real ``GoogleGenAI`` LLM (google-genai SDK), over loopback to the
provider emulator speaking the Gemini API: the ``generateContent`` bodies promptcache sends, the
usage read back (streamed too), tools, structured outputs and explicit cached contents."""

from __future__ import annotations

import json

import pytest
from li_fixtures import AIRLINE_POLICY, GEMINI_MODEL, gemini_llm
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index_instrumentation.dispatcher import instrument_tags
from promptcache_llamaindex import CachingLLM
from pydantic import BaseModel

from promptcache import PromptCache
from promptcache.lab.emulate import Emulator
from promptcache.providers.gemini_cache import GenAIClientTransport
from promptcache.stats import recorder_for

CLOCK = "2024-05-15 15:00:00"
GENERATE = f"/v1beta/models/{GEMINI_MODEL}:generateContent"


def _messages(minute: int = 0, question: str = "How many free bags for gold members?") -> list[ChatMessage]:
    policy = AIRLINE_POLICY.replace(CLOCK, f"2024-05-15 15:{minute:02d}:00")
    return [ChatMessage(role="system", content=policy), ChatMessage(role="user", content=question)]


def _snapshot(msgs: list[ChatMessage]) -> str:
    return json.dumps([m.model_dump(mode="json") for m in msgs], sort_keys=True)


def _system_text(body: dict[str, object]) -> str:
    return json.dumps(body["systemInstruction"])


def test_gemini_clock_relocated_and_prefix_read_back(emu: Emulator, cache: PromptCache) -> None:
    inner = gemini_llm(emu)
    calls = [_messages(m) for m in (0, 5, 10)]
    # Unwrapped, the changing clock line near the top of the policy breaks Gemini's prefix match.
    for m in calls:
        inner.chat(m)
    assert [u.cache_read_tokens for u in emu.usages if u] == [0, 0, 0]
    emu.reset()

    llm = CachingLLM(inner, cache)
    before = [_snapshot(m) for m in calls]
    with instrument_tags({"tenant_id": "acme"}):
        out = [llm.chat(m) for m in calls]
    assert [_snapshot(m) for m in calls] == before, "the caller's messages are never mutated"
    assert emu.paths == [GENERATE] * 3
    first, second, third = emu.requests
    assert _system_text(first).startswith('{"parts": [{"text": "# Airline Agent Policy')
    # Once seen changing, the clock value leaves systemInstruction for a labelled volatile part.
    assert _system_text(second) == _system_text(third)
    for body, minute in ((second, 5), (third, 10)):
        value = f"2024-05-15 15:{minute:02d}:00"
        assert value not in _system_text(body)
        assert value in json.dumps(body["contents"]) and "volatile_context" in json.dumps(body["contents"])
    metas = [r.additional_kwargs["promptcache"] for r in out]
    assert {m["format"] for m in metas} == {"gemini"} and metas[1]["relocated_values"] >= 1
    assert metas[2]["cache_read_tokens"] > 1000, "the third call reads the stable prefix back"
    row = recorder_for(cache).snapshot().get("acme", GEMINI_MODEL)
    assert row.calls == 3 and row.cache_read_tokens == sum(m["cache_read_tokens"] for m in metas)


def test_gemini_stream_and_async_report_cache_reads(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(gemini_llm(emu), cache, tenant="acme")
    llm.chat(_messages())
    chunks = list(llm.stream_chat(_messages()))
    assert "".join(c.delta or "" for c in chunks)
    meta = chunks[-1].additional_kwargs["promptcache"]
    assert meta["format"] == "gemini" and meta["prefix_key"], "the streamed request was rewritten"
    assert meta["cache_read_tokens"] > 1000 and meta["output_tokens"] > 0
    assert emu.paths[1] == f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"
    assert recorder_for(cache).snapshot().total.cache_read_tokens == meta["cache_read_tokens"]


async def test_gemini_async_chat_and_async_stream(emu: Emulator, cache: PromptCache) -> None:
    llm = CachingLLM(gemini_llm(emu), cache, tenant="globex")
    first = await llm.achat(_messages())
    gen = await llm.astream_chat(_messages())
    chunks = [c async for c in gen]
    assert first.additional_kwargs["promptcache"]["format"] == "gemini"
    assert chunks[-1].additional_kwargs["promptcache"]["cache_read_tokens"] > 1000
    assert recorder_for(cache).snapshot().for_tenant("globex").calls == 2


class Fare(BaseModel):
    route: str
    fare_usd: int


def test_gemini_tools_and_structured_predict(cache: PromptCache) -> None:
    def get_fare(route: str) -> str:
        """Fare of a route."""
        return "210"

    script = [
        {"tool_calls": [{"name": "get_fare", "arguments": {"route": "SFO-JFK"}}]},
        {"text": '{"route": "SFO-JFK", "fare_usd": 210}'},
    ]
    with Emulator(script=script) as emu:
        llm = CachingLLM(gemini_llm(emu, system_prompt=AIRLINE_POLICY), cache, tenant="acme")
        history = [ChatMessage(role="user", content="fare SFO-JFK?")]
        reply = llm.chat_with_tools([FunctionTool.from_defaults(fn=get_fare)], chat_history=history)
        (call,) = llm.get_tool_calls_from_response(reply)
        fare = llm.structured_predict(Fare, PromptTemplate("Extract the fare: {text}"), text="210 USD")
    assert len(history) == 1, "the caller's history does not grow"
    assert (call.tool_name, call.tool_kwargs) == ("get_fare", {"route": "SFO-JFK"})
    assert fare == Fare(route="SFO-JFK", fare_usd=210)
    tools_body, structured_body = emu.requests
    assert tools_body["tools"][0]["functionDeclarations"][0]["name"] == "get_fare"
    # GoogleGenAI's own structured output (a response schema), not generic tool calling.
    assert structured_body["generationConfig"]["responseMimeType"] == "application/json"
    assert "tools" not in structured_body
    assert recorder_for(cache).snapshot().for_tenant("acme").calls == 2


def test_gemini_explicit_cached_content_reused_and_dropped_when_refused(
    emu: Emulator, cache: PromptCache
) -> None:
    inner = gemini_llm(emu)
    caches = cache.gemini_caches(GenAIClientTransport(inner._client), ttl_s=600)
    llm = CachingLLM(inner, cache, gemini_caches=caches, tenant="acme")
    first = llm.chat(_messages())
    second = llm.chat(_messages(question="And for silver members?"))
    assert emu.paths == ["/v1beta/cachedContents", GENERATE, GENERATE]
    created, ask1, ask2 = emu.requests
    assert created["systemInstruction"]["parts"][0]["text"].startswith("# Airline Agent Policy")
    (name,) = emu.cached_contents
    for body in (ask1, ask2):
        # Gemini refuses systemInstruction next to cachedContent: it lives in the cache now.
        assert body["cachedContent"] == name and "systemInstruction" not in body
    m1, m2 = (r.additional_kwargs["promptcache"] for r in (first, second))
    assert m1["cache_write_tokens"] > 1000 and m1["cache_read_tokens"] == m1["cache_write_tokens"]
    assert m2["cache_write_tokens"] == 0 and m2["cache_read_tokens"] > 1000
    assert any(name in n for n in m2["notes"])

    # The cache disappears behind our back: the provider refuses it, the call still succeeds.
    assert emu._delete_cached_content(name)
    third = llm.chat(_messages())
    assert emu.paths[-2:] == [GENERATE, GENERATE]
    assert "cachedContent" in emu.requests[-2] and "cachedContent" not in emu.requests[-1]
    assert emu.requests[-1]["systemInstruction"] == created["systemInstruction"]
    assert any("refused" in n for n in third.additional_kwargs["promptcache"]["notes"])
    assert caches.handles() == []


STREAM = f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"


def _refused_then_resent(emu: Emulator, created: dict[str, object]) -> None:
    # The emulator records only the requests it answers: the refused one (403) is not there.
    assert emu.paths[-1] == STREAM and emu.paths.count(STREAM) == 1
    assert "cachedContent" not in emu.requests[-1]
    assert emu.requests[-1]["systemInstruction"] == created["systemInstruction"]


def test_gemini_streamed_call_survives_a_refused_cached_content(emu: Emulator, cache: PromptCache) -> None:
    # The sync SDK sends a stream lazily, so the refusal arrives at the first chunk.
    inner = gemini_llm(emu)
    caches = cache.gemini_caches(GenAIClientTransport(inner._client), ttl_s=600)
    llm = CachingLLM(inner, cache, gemini_caches=caches, tenant="acme")
    llm.chat(_messages())
    (name,) = emu.cached_contents
    created = emu.requests[0]
    assert emu._delete_cached_content(name)
    chunks = list(llm.stream_chat(_messages()))
    assert "".join(c.delta or "" for c in chunks)
    _refused_then_resent(emu, created)
    meta = chunks[-1].additional_kwargs["promptcache"]
    assert any("refused" in n for n in meta["notes"])
    assert meta["cache_write_tokens"] == 0 and meta["output_tokens"] > 0
    assert caches.handles() == []


async def test_gemini_async_stream_survives_a_refused_cached_content(
    emu: Emulator, cache: PromptCache
) -> None:
    inner = gemini_llm(emu)
    caches = cache.gemini_caches(GenAIClientTransport(inner._client), ttl_s=600)
    llm = CachingLLM(inner, cache, gemini_caches=caches, tenant="acme")
    await llm.achat(_messages())
    (name,) = emu.cached_contents
    created = emu.requests[0]
    assert emu._delete_cached_content(name)
    gen = await llm.astream_chat(_messages())
    chunks = [c async for c in gen]
    assert "".join(c.delta or "" for c in chunks)
    _refused_then_resent(emu, created)
    assert any("refused" in n for n in chunks[-1].additional_kwargs["promptcache"]["notes"])
    assert caches.handles() == []


def _losing_created_contents(emu: Emulator, cache: PromptCache) -> tuple[CachingLLM, object]:
    # The content is gone by the time the call that created it uses it (an expiry, a delete
    # racing us): the call is resent without it, and the creation it paid for is still reported.
    create = emu._create_cached_content

    def create_then_lose(*args: object) -> dict[str, object]:
        out = create(*args)
        emu._delete_cached_content(str(out["name"]))
        return out

    emu._create_cached_content = create_then_lose  # type: ignore[method-assign]
    inner = gemini_llm(emu)
    caches = cache.gemini_caches(GenAIClientTransport(inner._client), ttl_s=600)
    return CachingLLM(inner, cache, gemini_caches=caches, tenant="acme"), caches


def _write_still_counted(emu: Emulator, meta: dict[str, object], caches: object) -> None:
    created = emu.requests[0]
    assert emu.paths[0] == "/v1beta/cachedContents"
    assert "cachedContent" not in emu.requests[-1]
    assert emu.requests[-1]["systemInstruction"] == created["systemInstruction"]
    assert any("refused" in n for n in meta["notes"])  # type: ignore[attr-defined]
    written = emu.usages[0].cache_write_tokens
    assert written > 1000
    assert meta["cache_write_tokens"] == written and meta["cache_read_tokens"] == 0
    assert caches.handles() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_cached_content_refused_in_the_call_that_created_it_still_counts_its_write(
    emu: Emulator, cache: PromptCache, streamed: bool
) -> None:
    llm, caches = _losing_created_contents(emu, cache)
    if streamed:
        meta = list(llm.stream_chat(_messages()))[-1].additional_kwargs["promptcache"]
    else:
        meta = llm.chat(_messages()).additional_kwargs["promptcache"]
    _write_still_counted(emu, meta, caches)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_cached_content_refused_in_the_async_call_that_created_it_still_counts_its_write(
    emu: Emulator, cache: PromptCache, streamed: bool
) -> None:
    llm, caches = _losing_created_contents(emu, cache)
    if streamed:
        chunks = [c async for c in await llm.astream_chat(_messages())]
        meta = chunks[-1].additional_kwargs["promptcache"]
    else:
        meta = (await llm.achat(_messages())).additional_kwargs["promptcache"]
    _write_still_counted(emu, meta, caches)


def test_enable_through_settings_uses_explicit_gemini_caches(emu: Emulator, cache: PromptCache) -> None:
    from llama_index.core import Settings
    from promptcache_llamaindex import enable

    Settings.llm = gemini_llm(emu)
    enable(cache, tenant="acme", gemini_cache_ttl_s=600)
    llm = Settings.llm
    assert isinstance(llm, CachingLLM)
    llm.chat(_messages())
    second = llm.chat(_messages(question="And for silver members?"))
    assert emu.paths == ["/v1beta/cachedContents", GENERATE, GENERATE]
    assert emu.cached_contents and emu.requests[0]["ttl"] == "600s"
    assert "cachedContent" in emu.requests[2] and "systemInstruction" not in emu.requests[2]
    assert second.additional_kwargs["promptcache"]["cache_read_tokens"] > 1000
