"""The simulator's GPT-5.6 rules (developers.openai.com/api/docs/guides/prompt-caching, read
2026-12-07): lookups only at the request's own boundaries (explicit-only: first 2 and latest 50
explicit breakpoints; implicit: those, the implicit breakpoint at the latest eligible message,
up to 20 earlier eligible endings, the initial developer block's end), at most 4 writes with the
implicit breakpoint taking one, writes reported, breakpoints on tool results, none on assistant
output."""

from __future__ import annotations

from typing import Any

import pytest

from promptcache.lab.simulate import Simulator

BP = {"mode": "explicit"}


def words(n: int, seed: str = "w") -> str:
    return " ".join(f"{seed}{i}" for i in range(n))


def part(text: str, marked: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"type": "input_text", "text": text}
    if marked:
        p["prompt_cache_breakpoint"] = BP
    return p


def msg(role: str, text: str, marked: bool = False) -> dict[str, Any]:
    return {"role": role, "content": [part(text, marked)]}


def body(items: list[dict[str, Any]], mode: str = "explicit") -> dict[str, Any]:
    return {"model": "gpt-5.6-sol", "input": items, "prompt_cache_options": {"mode": mode}}


DEV = words(1500, "d")


def test_explicit_mode_reads_only_at_its_own_breakpoints() -> None:
    sim = Simulator()
    turn1 = [msg("developer", DEV, True), msg("user", words(300, "u"), True)]
    first = sim.feed(0.0, "openai-responses", body(turn1))
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    grown = [
        msg("developer", DEV, True),
        msg("user", words(300, "u")),
        msg("assistant", "ok"),
        msg("user", "more", True),
    ]
    # No breakpoint where turn 1 ended: only the developer prefix is read back.
    no_bridge = sim.feed(1.0, "openai-responses", body(grown))
    dev_only = no_bridge.usage.cache_read_tokens
    assert 0 < dev_only < first.usage.input_tokens - 50
    # With one there (what promptcache places), the whole of turn 1 is read.
    sim2 = Simulator()
    sim2.feed(0.0, "openai-responses", body(turn1))
    grown[1] = msg("user", words(300, "u"), True)
    bridged = sim2.feed(1.0, "openai-responses", body(grown))
    assert bridged.usage.cache_read_tokens > dev_only + 250
    # A write costs once: the bridged request writes only its new tail.
    assert bridged.usage.cache_write_tokens < 20


@pytest.mark.parametrize(("added", "hit"), [(20, True), (21, False)])
def test_implicit_mode_looks_back_20_eligible_message_endings(added: int, hit: bool) -> None:
    sim = Simulator()
    start = [msg("developer", DEV), msg("user", words(300, "u"))]
    sim.feed(0.0, "openai-responses", body(start, "implicit"))
    more = [msg("user", f"q{i}") for i in range(added)]
    r = sim.feed(1.0, "openai-responses", body([*start, *more], "implicit"))
    # Turn 1 wrote at its implicit breakpoint only (the user message's end): found while it is
    # among the 20 earlier eligible endings, else nothing is read.
    assert (r.usage.cache_read_tokens > 0) is hit


def test_explicit_lookups_are_the_first_2_and_latest_50() -> None:
    sim = Simulator()
    items = [msg("developer", DEV)] + [msg("user", words(30, f"p{i}_"), True) for i in range(60)]
    # Turn 1 marks only the 5th user message: its entry is written there.
    t1 = [items[0]] + [msg("user", words(30, f"p{i}_"), i == 4) for i in range(60)]
    sim.feed(0.0, "openai-responses", body(t1[:6]))
    # Turn 2 marks all 60: the 5th is neither among the first 2 nor the latest 50.
    r = sim.feed(1.0, "openai-responses", body(items))
    assert r.usage.cache_read_tokens == 0
    sim3 = Simulator()
    sim3.feed(0.0, "openai-responses", body(t1[:6]))
    r3 = sim3.feed(1.0, "openai-responses", body(items[:40]))  # 39 marks: the 5th is looked up
    assert r3.usage.cache_read_tokens > 1500


def test_four_writes_at_most_and_the_implicit_one_takes_a_slot() -> None:
    items = [msg("developer", DEV, True)] + [msg("user", words(200, f"s{i}_"), True) for i in range(5)]
    explicit = Simulator().feed(0.0, "openai-responses", body(items))
    implicit = Simulator().feed(0.0, "openai-responses", body(items, "implicit"))
    # Explicit: the latest 4 of the 6 breakpoints write, up to the last part (then the message's
    # closing token and the reply priming); the first two are inside what they cover.
    assert explicit.usage.cache_write_tokens == explicit.usage.input_tokens - 3
    # Implicit: its own breakpoint ends the last message (closing token included).
    assert implicit.usage.cache_write_tokens == implicit.usage.input_tokens - 2
    # Six breakpoints, one entry per written one: a later request with the first two only reads
    # none of theirs (they were not written), so it reads the 3rd one's prefix at most.
    later = Simulator()
    later.feed(0.0, "openai-responses", body(items))
    first_two = later.feed(1.0, "openai-responses", body(items[:2]))
    assert first_two.usage.cache_read_tokens == 0


def test_tool_results_take_a_breakpoint_assistant_output_does_not() -> None:
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    out = {"type": "function_call_output", "call_id": "c", "output": [part(words(200, "r"), True)]}
    sim = Simulator()
    r = sim.feed(0.0, "openai-responses", body([msg("developer", DEV), msg("user", "go"), call, out]))
    assert r.usage.cache_write_tokens == r.usage.input_tokens - 3  # up to the output's part
    on_assistant = body([msg("developer", DEV), msg("user", "go"), msg("assistant", words(200, "a"), True)])
    none = Simulator().feed(0.0, "openai-responses", on_assistant)
    assert none.usage.cache_write_tokens == 0
