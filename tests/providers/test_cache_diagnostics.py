"""Anthropic cache diagnostics (issue 23, item 1): ``PromptCache(cache_diagnostics=True)`` sends
``diagnostics.previous_message_id`` on every request of a conversation (null on the first turn,
the previous answer's id after), and the provider's verdict joins ``plan.explain()`` and the
figures as a :class:`~promptcache.figures.ProviderMissReason`.

The real ``anthropic`` SDK talks to promptcache's emulator through ``wrap_http_client``; the
emulator answers the diagnostics by comparing fingerprints per organization. Bodies are checked
against the SDK's own request TypedDict (``anthropic.types.beta.message_create_params``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types.beta.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from pydantic import TypeAdapter

from promptcache import PromptCache
from promptcache.figures import ProviderMissReason, Totals
from promptcache.lab.emulate import Emulator
from promptcache.llm_bridge import CallContext, plan_summary, record_call, use_call
from promptcache.providers.diagnostics import (
    ResponseChains,
    diagnosis_from_stream,
    response_id_from_stream,
    with_diagnostics,
)
from promptcache.transport import wrap_http_client

SYSTEM = "You are a support agent for an airline. Follow the policy below.\n" + "Rule: be kind. " * 400
TOOL = {
    "name": "get_reservation",
    "description": "Look a reservation up.",
    "input_schema": {"type": "object"},
}
OTHER = {"name": "cancel_reservation", "description": "Cancel it.", "input_schema": {"type": "object"}}
PARAMS = TypeAdapter(MessageCreateParamsNonStreaming)
STREAM_PARAMS = TypeAdapter(MessageCreateParamsStreaming)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def _client(emu: Emulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=emu.anthropic_base_url, api_key="k", http_client=wrap_http_client(None)
    )


def _call(
    client: anthropic.Anthropic,
    cache: PromptCache,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]],
    stream: bool = False,
    model: str = "claude-sonnet-5-5",
    tenant: str = "acme",
) -> tuple[CallContext, str]:
    """One model call under promptcache; the context and the answer's id."""
    ctx = CallContext(cache=cache, tenant=tenant)
    kw: Any = {"model": model, "max_tokens": 32, "system": SYSTEM, "tools": tools, "messages": messages}
    with use_call(ctx):
        if stream:
            with client.messages.stream(**kw) as s:
                for _ in s:
                    pass
                answer_id = s.get_final_message().id
        else:
            answer_id = client.messages.create(**kw).id
    return ctx, answer_id


def _sent(emu: Emulator) -> dict[str, Any]:
    body = emu.requests[-1]
    # Accepted by the SDK's own request type (its streaming variant for a streamed call).
    (STREAM_PARAMS if body.get("stream") else PARAMS).validate_python(body)
    assert set(body) <= set(MessageCreateParamsNonStreaming.__annotations__), set(body)
    return body


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_every_turn_names_the_previous_answer(emu: Emulator, stream: bool) -> None:
    client, cache = _client(emu), PromptCache(cache_diagnostics=True)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    _, first = _call(client, cache, msgs, tools=[TOOL], stream=stream)
    assert _sent(emu)["diagnostics"] == {"previous_message_id": None}  # first turn: the opt-in
    msgs += [{"role": "assistant", "content": "Which reservation?"}, {"role": "user", "content": "ZFA04Y"}]
    ctx, second = _call(client, cache, msgs, tools=[TOOL], stream=stream)
    assert _sent(emu)["diagnostics"] == {"previous_message_id": first}
    # Only appended: the provider reports no miss, and promptcache has nothing to add.
    assert ctx.plan is not None and ctx.plan.provider_reason is None
    assert ctx.usage is not None and ctx.usage.cache_read_tokens > 0
    msgs += [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "thanks"}]
    _call(client, cache, msgs, tools=[TOOL], stream=stream)
    assert _sent(emu)["diagnostics"] == {"previous_message_id": second}


def test_the_providers_verdict_joins_explain_and_the_figures(emu: Emulator) -> None:
    client, cache = _client(emu), PromptCache(cache_diagnostics=True)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
    _call(client, cache, msgs, tools=[TOOL])
    msgs += [{"role": "assistant", "content": "Which one?"}, {"role": "user", "content": "ZFA04Y"}]
    # The app adds a tool mid-conversation (no mid-conversation tool changes asked for).
    ctx, _ = _call(client, cache, msgs, tools=[TOOL, OTHER])
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


def test_conversations_and_tenants_keep_their_own_chains(emu: Emulator) -> None:
    client, cache = _client(emu), PromptCache(cache_diagnostics=True)
    a: list[dict[str, Any]] = [{"role": "user", "content": "conversation A"}]
    b: list[dict[str, Any]] = [{"role": "user", "content": "conversation B"}]
    _, a1 = _call(client, cache, a, tools=[TOOL])
    _call(client, cache, b, tools=[TOOL])
    _call(client, cache, a, tools=[TOOL], tenant="globex")  # same opening, another tenant
    assert _sent(emu)["diagnostics"] == {"previous_message_id": None}
    a += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    _call(client, cache, a, tools=[TOOL])
    assert _sent(emu)["diagnostics"] == {"previous_message_id": a1}


def test_off_by_default_and_never_on_bedrock_or_vertex(emu: Emulator) -> None:
    client = _client(emu)
    _call(client, PromptCache(), [{"role": "user", "content": "hi"}], tools=[TOOL])
    assert "diagnostics" not in _sent(emu)
    chains = ResponseChains()
    key = ("acme", b"c" * 16)
    for model in ("us.anthropic.claude-opus-5-5", "claude-sonnet-4-5@20250929"):
        body, added, note = with_diagnostics({"model": model}, chains, key, model)
        assert not added and "diagnostics" not in body and note is not None and "Claude API only" in note
    mine = {"model": "claude-opus-5-5", "diagnostics": {"previous_message_id": "msg_mine"}}
    assert with_diagnostics(mine, chains, key, "claude-opus-5-5")[0] is mine  # the caller's kept


def test_an_unknown_previous_message_is_reported_not_raised(emu: Emulator) -> None:
    client, cache = _client(emu), PromptCache(cache_diagnostics=True)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
    _call(client, cache, msgs, tools=[TOOL])
    emu.reset()  # the provider forgot every fingerprint
    msgs += [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "again"}]
    ctx, _ = _call(client, cache, msgs, tools=[TOOL])
    assert ctx.plan is not None
    assert ctx.plan.provider_reason is ProviderMissReason.PREVIOUS_MESSAGE_NOT_FOUND


def test_stream_readers_take_the_id_and_a_later_verdict() -> None:
    events = [
        {"type": "message_start", "message": {"id": "msg_9", "diagnostics": {"cache_miss_reason": None}}},
        {"type": "message_delta", "diagnostics": {"cache_miss_reason": {"type": "system_changed"}}},
    ]
    assert response_id_from_stream(events) == "msg_9"
    found = diagnosis_from_stream(events)
    assert found is not None and found.reason is ProviderMissReason.SYSTEM_CHANGED
    assert found.missed_tokens is None
    unknown = [{"type": "message_start", "message": {"diagnostics": {"cache_miss_reason": {"type": "new"}}}}]
    assert diagnosis_from_stream(unknown) is None  # a reason this version does not know: not guessed


def test_a_refused_diagnostics_field_is_resent_without_it() -> None:
    with Emulator(rejects=["diagnostics"]) as emu:
        client, cache = _client(emu), PromptCache(cache_diagnostics=True)
        ctx, _ = _call(client, cache, [{"role": "user", "content": "hello"}], tools=[TOOL])
    assert [("diagnostics" in b) for b in emu.requests] == [True, False]
    assert ctx.hints_off and ctx.usage is not None


def test_the_providers_verdict_reaches_prometheus_and_the_stats_aggregate(emu: Emulator) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from promptcache.pseudonym import tenant_label
    from promptcache.telemetry import hooks
    from promptcache.telemetry.aggregate import StatsAggregator
    from promptcache.telemetry.prometheus import PrometheusExporter

    exporter = PrometheusExporter().install()
    aggregate = StatsAggregator()
    hooks.add_observer(aggregate)
    try:
        client, cache = _client(emu), PromptCache(cache_diagnostics=True)
        msgs: list[dict[str, Any]] = [{"role": "user", "content": "I want to change my flight"}]
        record_call(_call(client, cache, msgs, tools=[TOOL])[0])
        msgs += [{"role": "assistant", "content": "Which one?"}, {"role": "user", "content": "ZFA04Y"}]
        record_call(_call(client, cache, msgs, tools=[TOOL, OTHER])[0])
    finally:
        exporter.uninstall()
        hooks.remove_observer(aggregate)
    text = generate_latest(exporter.registry).decode()
    label = tenant_label("acme")
    want = f'agent="",model="claude-sonnet-5-5",reason="tools_changed",tenant="{label}"'
    assert f"promptcache_prefix_misses_total{{{want}}} 1.0" in text
    rows = [r for r in aggregate.snapshot().rows if r.tenant == label and r.model == "claude-sonnet-5-5"]
    assert sum(r.miss_reasons.get("tools_changed", 0) for r in rows) == 1
    assert "acme" not in text  # the tenant only by its label
