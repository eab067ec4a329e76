"""OpenAI prompt cache diagnostics through promptcache (issue 23, "Miss diagnostics"):
``PromptCache(cache_diagnostics=True)`` names each conversation's previous answer in
``prompt_cache_options.comparison_response_id`` on ``openai-responses`` requests for GPT-5.6 and
later, and the provider's verdict joins ``plan.explain()`` and the figures as a
:class:`~promptcache.figures.ProviderMissReason`, as Anthropic's does.

The real ``openai`` SDK, sync and async, JSON and streamed, talks to promptcache's emulator through
``wrap_http_client``; the emulator answers the diagnostics per organization (the API key) by
comparing each request with the baseline it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from promptcache import PromptCache
from promptcache.figures import ProviderMissReason, Totals
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import CallContext, plan_summary, record_call, use_call
from promptcache.providers.diagnostics import Diagnosis
from promptcache.providers.openai_diagnostics import (
    CacheMissReason,
    DiagnosticOutcome,
    OpenAIDiagnosis,
    miss_diagnosis,
    response_id_from_stream,
)
from promptcache.transport import wrap_http_client

MODEL = "gpt-5.6-sol"
POLICY = "\n".join(f"Rule {i}: refunds follow the fare rules of the ticket." for i in range(150))
TOOL = {"type": "function", "name": "get_reservation", "parameters": {"type": "object"}, "strict": False}
OTHER = {"type": "function", "name": "cancel_reservation", "parameters": {"type": "object"}, "strict": False}
MODES = [(False, False), (True, False), (False, True), (True, True)]
MODE_IDS = ["sync-json", "sync-sse", "async-json", "async-sse"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _call(
    emu: Emulator,
    cache: PromptCache,
    items: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    stream: bool = False,
    asynchronous: bool = False,
    tenant: str = "acme",
    **extra: Any,
) -> tuple[CallContext, str]:
    """One Responses call under promptcache; its context and the answer's id as the SDK saw it."""
    ctx = CallContext(cache=cache, tenant=tenant)
    kw: dict[str, Any] = {
        "model": MODEL,
        "instructions": POLICY,
        "input": items,
        "tools": [TOOL] if tools is None else tools,
        **extra,
    }

    def sync() -> str:
        client = openai.OpenAI(
            base_url=emu.openai_base_url, api_key="org-a", http_client=wrap_http_client(None), max_retries=0
        )
        with use_call(ctx):
            if stream:
                with client.responses.stream(**kw) as s:
                    for _ in s:
                        pass
                    return str(s.get_final_response().id)
            return str(client.responses.create(**kw).id)

    async def run_async() -> str:
        client = openai.AsyncOpenAI(
            base_url=emu.openai_base_url,
            api_key="org-a",
            http_client=wrap_http_client(None, asynchronous=True),
            max_retries=0,
        )
        with use_call(ctx):
            if stream:
                async with client.responses.stream(**kw) as s:
                    async for _ in s:
                        pass
                    return str((await s.get_final_response()).id)
            return str((await client.responses.create(**kw)).id)

    answer = asyncio.run(run_async()) if asynchronous else sync()
    return ctx, answer


def _comparison(emu: Emulator) -> Any:
    opts = emu.requests[-1].get("prompt_cache_options")
    return opts.get("comparison_response_id") if isinstance(opts, dict) else None


def _turn(items: list[dict[str, Any]], said: str, asked: str) -> list[dict[str, Any]]:
    return [*items, {"role": "assistant", "content": said}, {"role": "user", "content": asked}]


@pytest.mark.parametrize(("stream", "asynchronous"), MODES, ids=MODE_IDS)
def test_every_later_turn_names_the_previous_answer(emu: Emulator, stream: bool, asynchronous: bool) -> None:
    cache = PromptCache(cache_diagnostics=True)
    how: dict[str, Any] = {"stream": stream, "asynchronous": asynchronous}
    items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    ctx, first = _call(emu, cache, items, **how)
    assert _comparison(emu) is None  # the first turn has nothing to compare with
    assert ctx.plan is not None and not any(h.kind == "diagnostics" for h in ctx.plan.hints)
    items = _turn(items, "Which reservation?", "ZFA04Y")
    ctx, second = _call(emu, cache, items, **how)
    assert _comparison(emu) == first
    assert ctx.plan is not None
    assert [h.where for h in ctx.plan.hints if h.kind == "diagnostics"] == [
        "$.prompt_cache_options.comparison_response_id"
    ]
    # Only appended: the provider says cache_hit, which is no miss.
    assert ctx.plan.provider_reason is None and "provider:" not in ctx.plan.explain_text()
    assert ctx.usage is not None and ctx.usage.cache_read_tokens > 0
    items = _turn(items, "Done.", "thanks")
    _call(emu, cache, items, **how)
    assert _comparison(emu) == second


@pytest.mark.parametrize(("stream", "asynchronous"), MODES, ids=MODE_IDS)
def test_a_tool_change_reports_the_providers_reason(emu: Emulator, stream: bool, asynchronous: bool) -> None:
    cache = PromptCache(cache_diagnostics=True)
    how: dict[str, Any] = {"stream": stream, "asynchronous": asynchronous}
    # The app's own prompt_cache_key (kept as sent), so the tool set is the first thing that differs.
    mine: dict[str, Any] = {"prompt_cache_key": "support-agent"}
    items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    _call(emu, cache, items, **how, **mine)
    items = _turn(items, "Which one?", "ZFA04Y")
    ctx, _ = _call(emu, cache, items, tools=[TOOL, OTHER], **how, **mine)
    plan = ctx.plan
    assert plan is not None and plan.provider_reason is ProviderMissReason.TOOLS_CHANGED
    ex = plan.explain()
    assert ex.provider_reason is ProviderMissReason.TOOLS_CHANGED
    assert ex.provider_missed_tokens is not None and ex.provider_missed_tokens > 1000
    assert "provider: tools_changed" in str(ex) and "provider: tools_changed" in plan.explain_text()
    assert plan_summary(ctx)["provider_miss_reason"] == "tools_changed"
    figures = record_call(ctx)
    assert figures is not None and figures.provider_miss_reason is ProviderMissReason.TOOLS_CHANGED
    assert Totals.of_call(figures).miss_reasons == {"tools_changed": 1}


def test_promptcaches_own_key_follows_the_tool_set_so_the_provider_names_the_key(emu: Emulator) -> None:
    # promptcache's prompt_cache_key is the routing key (tool set and the start of the system
    # prompt), and the provider tries the key before the tools: its first classified cause is
    # then the key. The miss is the same one (the tools open the prompt).
    cache = PromptCache(cache_diagnostics=True)
    items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    _call(emu, cache, items)
    key = emu.requests[-1]["prompt_cache_key"]
    ctx, _ = _call(emu, cache, _turn(items, "Which one?", "ZFA04Y"), tools=[TOOL, OTHER])
    assert emu.requests[-1]["prompt_cache_key"] != key
    assert ctx.plan is not None and ctx.plan.provider_reason is ProviderMissReason.PROMPT_CACHE_KEY_CHANGED
    figures = record_call(ctx)
    assert figures is not None and Totals.of_call(figures).miss_reasons == {"prompt_cache_key_changed": 1}


def test_off_by_default_sends_nothing(emu: Emulator) -> None:
    cache = PromptCache()
    items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    _call(emu, cache, items)
    ctx, _ = _call(emu, cache, _turn(items, "Which one?", "ZFA04Y"), tools=[TOOL, OTHER])
    assert _comparison(emu) is None and "prompt_cache_diagnostics" not in str(emu.requests[-1])
    assert ctx.plan is not None and ctx.plan.provider_reason is None


def _sent_twice(emu: Emulator, send: Any) -> list[dict[str, Any]]:
    """The last body of a two-turn conversation sent by ``send(cache, items)``, with the option
    on and off (each on a fresh cache: the same decisions, so the same bytes unless it acts)."""
    bodies = []
    for on in (True, False):
        cache = PromptCache(cache_diagnostics=on)
        items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
        send(cache, items)
        send(cache, _turn(items, "Which one?", "ZFA04Y"))
        bodies.append(emu.requests[-1])
    return bodies


def test_chat_completions_and_models_before_gpt_5_6_are_untouched(emu: Emulator) -> None:
    client = openai.OpenAI(
        base_url=emu.openai_base_url, api_key="org-a", http_client=wrap_http_client(None), max_retries=0
    )

    def chat(cache: PromptCache, items: list[dict[str, Any]]) -> None:
        with use_call(CallContext(cache=cache, tenant="acme")):
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "system", "content": POLICY}, *items],  # type: ignore[list-item]
            )

    on, off = _sent_twice(emu, chat)
    assert on == off and "prompt_cache_options" not in on  # GPT-5.6 over Chat Completions

    older: list[CallContext] = []

    def responses(cache: PromptCache, items: list[dict[str, Any]]) -> None:
        ctx = CallContext(cache=cache, tenant="acme")
        older.append(ctx)
        with use_call(ctx):
            client.responses.create(model="gpt-5.5", instructions=POLICY, input=items)  # type: ignore[arg-type]

    on, off = _sent_twice(emu, responses)
    assert on == off and "prompt_cache_options" not in on  # a Responses model before GPT-5.6
    plan = older[1].plan
    assert plan is not None and any("GPT-5.6 and later only" in d for d in plan.decisions)


def test_an_unknown_baseline_is_reported_not_raised(emu: Emulator) -> None:
    cache = PromptCache(cache_diagnostics=True)
    items: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
    _call(emu, cache, items)
    items = _turn(items, "hi", "again")
    _, second = _call(emu, cache, items)
    emu.reset()  # the provider forgot every response: the next one is numbered from 1 again
    ctx, _ = _call(emu, cache, _turn(items, "yes?", "still there?"))
    assert _comparison(emu) == second
    assert ctx.plan is not None
    assert ctx.plan.provider_reason is ProviderMissReason.PREVIOUS_MESSAGE_NOT_FOUND


def test_a_stored_conversation_compares_with_its_previous_response(emu: Emulator) -> None:
    # previous_response_id: the input holds the new turn only, and the response it continues is
    # that turn's baseline, whatever promptcache's chains hold.
    cache = PromptCache(cache_diagnostics=True)
    _, first = _call(emu, cache, [{"role": "user", "content": "I want to change my flight"}])
    _call(emu, cache, [{"role": "user", "content": "ZFA04Y"}], previous_response_id=first)
    assert _comparison(emu) == first


def test_the_callers_own_comparison_is_kept(emu: Emulator) -> None:
    cache = PromptCache(cache_diagnostics=True)
    items: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
    _, first = _call(emu, cache, items)
    _call(emu, cache, _turn(items, "hi", "more"))
    ctx, _ = _call(
        emu,
        cache,
        _turn(_turn(items, "hi", "more"), "ok", "bye"),
        prompt_cache_options={"comparison_response_id": first},
    )
    assert _comparison(emu) == first
    assert ctx.plan is not None and "comparison_response_id set by the caller: kept" in ctx.plan.decisions


def test_a_refused_comparison_is_resent_without_it() -> None:
    with Emulator(rejects=["comparison_response_id"]) as emu:
        cache = PromptCache(cache_diagnostics=True)
        items: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
        _call(emu, cache, items)
        ctx, _ = _call(emu, cache, _turn(items, "hi", "more"))
    assert [_has_comparison(b) for b in emu.requests] == [False, True, False]
    assert ctx.hints_off and ctx.usage is not None


def _has_comparison(body: dict[str, Any]) -> bool:
    opts = body.get("prompt_cache_options")
    return isinstance(opts, dict) and "comparison_response_id" in opts


def test_every_verdict_maps_onto_the_provider_neutral_reasons() -> None:
    for reason in CacheMissReason:
        found = miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.CACHE_MISS, reason, 7))
        assert found == Diagnosis(ProviderMissReason(reason.value), 7)
    not_found = miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.COMPARISON_RESPONSE_NOT_FOUND))
    assert not_found == Diagnosis(ProviderMissReason.PREVIOUS_MESSAGE_NOT_FOUND)
    assert miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.UNAVAILABLE)) == Diagnosis(
        ProviderMissReason.UNAVAILABLE
    )
    assert miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.CACHE_HIT)) is None
    assert miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.CACHE_MISS)) is None  # unknown reason
    assert miss_diagnosis(None) is None
    # A stream cut before response.completed still names its response.
    assert response_id_from_stream([{"type": "response.created", "response": {"id": "resp_7"}}]) == "resp_7"
    assert response_id_from_stream([{"type": "response.output_text.delta", "delta": "x"}]) is None


def test_a_conversation_sent_to_both_providers_keeps_one_chain_each(emu: Emulator) -> None:
    # An app falling back between providers sends the same conversation to both; neither
    # provider knows the other's response ids.
    claude = anthropic.Anthropic(
        base_url=emu.anthropic_base_url, api_key="org-a", http_client=wrap_http_client(None), max_retries=0
    )
    cache = PromptCache(cache_diagnostics=True)
    items: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]

    def ask_claude(messages: list[dict[str, Any]]) -> str:
        with use_call(CallContext(cache=cache, tenant="acme")):
            kw: Any = {"model": "claude-sonnet-5-5", "max_tokens": 32, "system": POLICY, "messages": messages}
            return str(claude.messages.create(**kw).id)

    _, first = _call(emu, cache, items)
    message = ask_claude(items)
    _call(emu, cache, _turn(items, "Which one?", "ZFA04Y"))
    assert _comparison(emu) == first
    ask_claude(_turn(items, "Which one?", "ZFA04Y"))
    assert emu.requests[-1]["diagnostics"] == {"previous_message_id": message}
