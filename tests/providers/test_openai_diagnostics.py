"""OpenAI prompt cache diagnostics (developers.openai.com/api/docs/guides/prompt-caching/
diagnostics, read 2026-12-07) through the real ``openai`` SDK against the emulator: the request
names the baseline in ``prompt_cache_options.comparison_response_id``, the answer's
``prompt_cache_diagnostics`` is read into enum values, JSON and stream alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.emulate import Emulator
from promptcache.providers.openai_diagnostics import (
    CacheMissReason,
    DiagnosticOutcome,
    OpenAIDiagnosis,
    diagnosable,
    diagnosis_from_response,
    diagnosis_from_stream,
    response_id,
    with_comparison,
)

POLICY = "\n".join(f"Rule {i}: refunds follow the fare rules of the ticket." for i in range(150))
TOOL = {"type": "function", "name": "get_time", "parameters": {"type": "object"}, "strict": False}


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    with Emulator() as emu:
        yield openai.OpenAI(base_url=emu.openai_base_url, api_key="org-a", max_retries=0)


def _ask(
    client: openai.OpenAI, body: dict[str, Any], previous: str | None
) -> tuple[str, OpenAIDiagnosis | None]:
    sent, note = with_comparison(body, previous)
    assert note is None
    if sent.get("stream"):
        events = [e.model_dump() for e in client.responses.create(**sent)]
        done = events[-1]["response"]
        return done["id"], diagnosis_from_stream(events)
    answer = client.responses.create(**sent).model_dump()
    return str(response_id(answer)), diagnosis_from_response(answer)


def _body(model: str = "gpt-5.6-sol", tools: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"model": model, "instructions": POLICY, "input": "Reply with OK.", "tools": tools or [TOOL], **kw}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_verdicts_the_guide_lists(client: openai.OpenAI, stream: bool) -> None:
    first, none = _ask(client, _body(stream=stream), None)
    assert none is None  # the first turn asks for nothing
    _, hit = _ask(client, _body(stream=stream), first)
    assert hit == OpenAIDiagnosis(DiagnosticOutcome.CACHE_HIT)
    # The guide's example: the tool renamed from get_time to get_date.
    _, miss = _ask(client, _body(tools=[{**TOOL, "name": "get_date"}], stream=stream), first)
    assert miss is not None and miss.outcome is DiagnosticOutcome.CACHE_MISS
    assert miss.reason is CacheMissReason.TOOLS_CHANGED
    assert miss.reusable_tokens and miss.missed_tokens == miss.reusable_tokens
    # A timestamp in the instructions: earlier input changed.
    _, edited = _ask(client, _body(instructions=POLICY + "\nNow: 10:31", stream=stream), first)
    assert edited is not None and edited.reason is CacheMissReason.INPUT_CHANGED
    _, gone = _ask(client, _body(stream=stream), "resp_unknown")
    assert gone == OpenAIDiagnosis(DiagnosticOutcome.COMPARISON_RESPONSE_NOT_FOUND)
    _, older = _ask(client, _body(model="gpt-5.5", stream=stream), first)
    assert older == OpenAIDiagnosis(DiagnosticOutcome.UNAVAILABLE)


def test_another_organization_cannot_name_the_baseline() -> None:
    with Emulator() as emu:
        a = openai.OpenAI(base_url=emu.openai_base_url, api_key="org-a", max_retries=0)
        b = openai.OpenAI(base_url=emu.openai_base_url, api_key="org-b", max_retries=0)
        first, _ = _ask(a, _body(), None)
        _, theirs = _ask(b, _body(), first)
    assert theirs == OpenAIDiagnosis(DiagnosticOutcome.COMPARISON_RESPONSE_NOT_FOUND)


def test_comparison_sits_beside_the_explicit_mode_and_never_beside_retention() -> None:
    prepared = PromptCache().prepare_request(_body(), format="openai-responses", tenant="t").body
    sent, _ = with_comparison(prepared, "resp_1")
    assert sent["prompt_cache_options"]["comparison_response_id"] == "resp_1"
    assert "prompt_cache_retention" not in sent
    kept, note = with_comparison({**_body(), "prompt_cache_retention": "24h"}, "resp_1")
    assert "prompt_cache_options" not in kept and note is not None
    mine, note = with_comparison(
        {**_body(), "prompt_cache_options": {"comparison_response_id": "resp_0"}}, "resp_1"
    )
    assert mine["prompt_cache_options"] == {"comparison_response_id": "resp_0"} and note is not None


def test_an_unknown_verdict_is_not_guessed() -> None:
    assert diagnosis_from_response({"prompt_cache_diagnostics": {"type": "cache_partial_hit"}}) is None
    unknown = diagnosis_from_response(
        {"prompt_cache_diagnostics": {"type": "cache_miss", "reason": "moon_phase"}}
    )
    assert unknown == OpenAIDiagnosis(DiagnosticOutcome.CACHE_MISS)
    assert diagnosis_from_response({"id": "resp_1"}) is None
    assert diagnosable("gpt-5.6-terra", WireFormat.OPENAI_RESPONSES)
    assert not diagnosable("gpt-5.6-terra", WireFormat.OPENAI_CHAT)
