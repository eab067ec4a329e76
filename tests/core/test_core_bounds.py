"""Bounded memory and a bounded body (issue 19, item 7): what grows per tenant or model stops growing.

Memory itself is measured in ``make reliability`` (section ``linear``: tracemalloc at 100k
tenants); here each table is held to its stated bound, and an oversized body to its rule.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.blocks import Block
from promptcache.figures import Degradation
from promptcache.formats import WireFormat
from promptcache.pipeline.analyse import MAX_RELOCATED_VALUES, Analyser, Message
from promptcache.pipeline.learning import conversation_id
from promptcache.plan import Plan
from promptcache.stats import OTHER_TENANT, StatsRecorder
from promptcache.usage import CacheUsage
from promptcache.wire import get_adapter


def _usage(model: str, tokens: int = 100) -> CacheUsage:
    return CacheUsage(provider="openai", model=model, input_tokens=tokens, cache_read_tokens=tokens // 2)


def _body(system: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
    }


def test_usage_rows_are_bounded_and_the_totals_stay_exact() -> None:
    rec = StatsRecorder(max_rows=3)
    for i in range(10):
        rec.record(f"t{i}", _usage("gpt-4o"))
    rec.record("t9", _usage("gpt-4o"))  # recorded again: the most recent rows are the ones kept
    rec.record("t10", _usage("gpt-4o"))
    snap = rec.snapshot()
    kept = {r.tenant for r in snap.rows if r.tenant != OTHER_TENANT}
    assert len(rec) == 3 and kept == {"t8", "t9", "t10"}
    other = snap.get(OTHER_TENANT, None)
    assert other.calls == 8 and other.input_tokens == 800  # t0..t7, added up
    assert snap.total.calls == 12 and snap.total.input_tokens == 1200  # nothing lost
    persisted = rec.persisted("w", 0.0)
    assert sum(r.calls for r in persisted.rows) == 12
    with pytest.raises(ValueError, match="max_rows"):
        StatsRecorder(max_rows=0)


def test_key_contracts_and_families_are_bounded_by_max_families() -> None:
    cache = PromptCache(record_stats=False, max_families=8)
    first = cache.prepare_request(_body("You help."), format="openai-chat", tenant="tenant-0").plan
    for i in range(1, 50):
        cache.prepare_request(_body("You help."), format="openai-chat", tenant=f"tenant-{i}")
        cache.record_usage(_usage(f"model-{i % 5}"), tenant=f"tenant-{i}")
    assert len(cache._contracts) <= 8 and len(cache._families) <= 8
    assert ("tenant-0", "gpt-4o") not in cache._contracts  # let go ...
    again = cache.prepare_request(_body("You help."), format="openai-chat", tenant="tenant-0").plan
    assert again.prefix_key == first.prefix_key  # ... and made again: the same keys


def test_a_conversation_is_remembered_by_a_small_digest_of_its_opening_message() -> None:
    analyser = Analyser(1_000, 1_000_000, MAX_RELOCATED_VALUES)
    fmt = WireFormat.OPENAI_CHAT
    adapter = get_adapter(fmt)
    hi = {"role": "user", "content": "hi"}

    def opening(msg: dict[str, str], current: bool) -> list[Message]:
        return [analyser.message(fmt, adapter, msg, current)]

    cid = conversation_id(opening(hi, True))
    assert isinstance(cid, bytes) and len(cid) == 16
    # The opening message sent as the current turn, then as history: the same conversation.
    assert cid == conversation_id(opening(hi, False))
    assert cid != conversation_id(opening({"role": "user", "content": "hello"}, False))
    assert conversation_id([]) is None


def test_interleaved_conversations_are_told_apart_by_their_opening_message() -> None:
    cache = PromptCache(record_stats=False)
    system = {"role": "system", "content": "You help."}

    def turn(opening: str, *rest: str) -> Plan:
        msgs = [system, {"role": "user", "content": opening}]
        for i, text in enumerate(rest):
            msgs += [{"role": "assistant", "content": f"answer {i}"}, {"role": "user", "content": text}]
        return cache.prepare_request({"model": "gpt-4o", "messages": msgs}, format="openai-chat").plan

    turn("plan my trip", "to Lisbon")
    turn("fix my bug", "in the parser")
    appended = turn("plan my trip", "to Lisbon", "in May")
    # Compared with its own previous request, not the other conversation's: it only appended.
    assert appended.explain().changes == []
    assert "rewritten" not in appended.explain_text()


def test_a_body_above_max_body_bytes_is_passed_through_unprocessed_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = PromptCache(record_stats=False, max_body_bytes=10_000)
    small = _body("Be brief.\nCurrent date: 2024-05-15")
    big = _body("Be brief.\nCurrent date: 2024-05-15\n" + "Policy line.\n" * 1000)
    assert cache.prepare_request(small, format="openai-chat").plan.blocks  # processed
    caplog.set_level(logging.WARNING, logger="promptcache")
    for _ in range(3):
        out = cache.prepare_request(big, format="openai-chat", tenant="acme")
        assert out.body == big and out.body is not big  # as sent, not the caller's own dict
        assert out.plan.blocks == [] and out.plan.hints == [] and out.plan.tenant == "acme"
        assert "max_body_bytes=10,000" in out.plan.decisions[0]
    assert cache.degradations() == {Degradation.BODY_TOO_LARGE.value: 3}
    assert len(caplog.records) == 1  # said once; counted every time
    assert "Policy line" not in caplog.text  # sizes only, never the prompt


def test_max_body_bytes_must_be_a_positive_count() -> None:
    for bad in (0, -1, True, 1.5, "8MB"):
        with pytest.raises(ValueError, match="max_body_bytes"):
            PromptCache(max_body_bytes=bad)  # type: ignore[arg-type]


# Relocation is bounded too (issue 19, item 7): a text or tool schema holding more detected
# volatile values than max_relocated_values is sent in place, not relocated, and counted.


def _log(n: int, year: int) -> str:
    """A system text of ``n`` log lines, a timestamp (in ``year``) on each, after a policy line."""
    lines = [
        f"Policy: answer from the log. event {i:05d} at {year}-05-{1 + i % 28:02d} 10:00:00 ok"
        for i in range(n)
    ]
    return "\n".join(lines)


def test_a_text_above_the_relocation_bound_is_sent_in_place_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = PromptCache(record_stats=False)  # the default bound: MAX_RELOCATED_VALUES
    n = MAX_RELOCATED_VALUES + 1
    caplog.set_level(logging.WARNING, logger="promptcache")
    plans = []
    for year in (2021, 2022, 2023):  # every value changes on every call
        text = _log(n, year)
        out = cache.prepare_request(_body(text), format="openai-chat")
        # As the app sent it: no volatile block, no marker, nothing moved.
        assert out.body["messages"] == _body(text)["messages"]
        assert out.plan.fragments == []
        assert out.plan.decisions[-1] == (
            f"system: not relocated: {n:,} volatile values, more than max_relocated_values=1,000; "
            "sent in place"
        )
        plans.append(out.plan)
    assert cache.degradations() == {Degradation.TOO_MANY_VOLATILE.value: 3}
    explained = str(plans[-1].explain())
    assert f"its {n:,} volatile values stay in place" in explained and "max_relocated_values" in explained
    assert len(caplog.records) == 1  # said once; counted every time
    assert "too_many_volatile" in caplog.text and f"{n:,} values" in caplog.text
    assert "Policy" not in caplog.text and "2023-" not in caplog.text  # counts only, never the prompt
    assert "Policy" not in explained and "2023-" not in explained


def test_a_text_at_the_relocation_bound_is_relocated_as_before() -> None:
    cache = PromptCache(record_stats=False)
    n = MAX_RELOCATED_VALUES
    cache.prepare_request(_body(_log(n, 2021)), format="openai-chat")
    out = cache.prepare_request(_body(_log(n, 2022)), format="openai-chat")  # seen changing: all move
    assert len(out.plan.fragments) == n
    assert [m["role"] for m in out.body["messages"]] == ["system", "system", "user"]
    assert "2022-" not in out.body["messages"][0]["content"]
    assert out.body["messages"][1]["content"].count("2022-") == n  # in the volatile block
    assert not any("not relocated" in d for d in out.plan.decisions)
    assert cache.degradations() == {}


def _tool(description: str, *, keys_reversed: bool = False) -> dict[str, Any]:
    fn = {"name": "search", "description": description, "parameters": {"type": "object", "properties": {}}}
    if keys_reversed:  # the same tool, its keys in another order: the family sends canonical JSON
        fn = dict(reversed(fn.items()))
    return {"type": "function", "function": fn}


@pytest.mark.parametrize("n", [5, 6])
def test_a_tool_schema_above_the_relocation_bound_is_left_as_it_is(
    n: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="promptcache")
    cache = PromptCache(record_stats=False, max_relocated_values=5)
    # A value at the start of a line is hidden by the "\n" escape in the schema's JSON text: the
    # count is made in the strings themselves.
    description = "Searches. Index built at 2024-05-01 10:00:00.\n" + "\n".join(
        f"2024-05-{1 + i:02d} 11:00:00 rebuilt" for i in range(n - 1)
    )
    body = {**_body("You help."), "tools": [_tool(description)]}
    cache.prepare_request(body, format="openai-chat")
    body2 = {**_body("You help."), "tools": [_tool(description, keys_reversed=True)]}
    out = cache.prepare_request(body2, format="openai-chat")
    sent = out.body["tools"][0]["function"]["description"]
    unrelocated = [d for d in out.plan.decisions if "not relocated" in d]
    if n > 5:
        assert sent == description and out.plan.fragments == []
        assert unrelocated == [
            "tool 'search': not relocated: 6 volatile values, more than max_relocated_values=5; sent in place"
        ]
        assert cache.degradations() == {Degradation.TOO_MANY_VOLATILE.value: 1}
        # The log names the block kind and the count: neither the tool's name nor its schema.
        assert "a tool schema (6 values)" in caplog.text
        assert "search" not in caplog.text and "Searches" not in caplog.text and "2024-" not in caplog.text
    else:
        assert "2024-" not in sent and sent.count("[volatile:") == n and len(out.plan.fragments) == n
        assert unrelocated == [] and cache.degradations() == {}


def test_plan_of_blocks_keeps_a_text_above_the_bound_in_place() -> None:
    cache = PromptCache(record_stats=False, max_relocated_values=3)
    text = _log(4, 2024)
    plan = cache.plan([Block(kind="system", content=text), Block(kind="user", content="hi")], model="m")
    assert plan.fragments == [] and plan.blocks[0].content == text
    assert plan.decisions == [
        "system: not relocated: 4 volatile values, more than max_relocated_values=3; sent in place"
    ]
    assert cache.degradations() == {Degradation.TOO_MANY_VOLATILE.value: 1}
    kept = PromptCache(record_stats=False, max_relocated_values=4).plan(
        [Block(kind="system", content=text)], model="m"
    )
    assert len(kept.fragments) == 4 and kept.decisions == []


def test_max_relocated_values_must_be_a_positive_count() -> None:
    for bad in (0, -1, True, 1.5, "1000"):
        with pytest.raises(ValueError, match="max_relocated_values"):
            PromptCache(max_relocated_values=bad)  # type: ignore[arg-type]
