"""The caller's own cache markers are sacred (issue 20, item 2; DESIGN.md "Principles learned in use").

A ``cache_control`` / ``cachePoint`` the caller placed is sent byte for byte with its TTL on every
call; promptcache's breakpoints only use the free slots and take the TTL the provider's order rule
allows around the caller's (longer TTLs first). Checked at the pure decision
(:func:`promptcache.providers.hints.breakpoint_ttl`), on the bodies ``prepare_request`` makes,
and against the simulator's own rule (a 1h breakpoint after a 5m one is refused, as Anthropic does).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from promptcache.engine import PromptCache
from promptcache.lab.simulate import BreakpointTtlOrder, Simulator
from promptcache.policy import Policy
from promptcache.providers.hints import breakpoint_ttl

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))
CC = {"type": "ephemeral"}
CC1H = {"type": "ephemeral", "ttl": "1h"}
TOOLS = [
    {"name": "book", "description": "Book a flight.", "input_schema": {"type": "object"}},
    {"name": "search", "description": "Search flights.", "input_schema": {"type": "object"}},
]


def _anthropic(system: Any, question: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": system,
        "tools": copy.deepcopy(TOOLS),
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def _markers(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every cache_control of an Anthropic body, with its place, in rendering order."""
    found = [
        (f"tools[{i}]", t["cache_control"])
        for i, t in enumerate(body.get("tools", []))
        if "cache_control" in t
    ]
    system = body.get("system")
    if isinstance(system, list):
        found += [(f"system[{i}]", b["cache_control"]) for i, b in enumerate(system) if "cache_control" in b]
    for mi, m in enumerate(body["messages"]):
        if isinstance(m["content"], list):
            found += [
                (f"messages[{mi}].content[{bi}]", b["cache_control"])
                for bi, b in enumerate(m["content"])
                if "cache_control" in b
            ]
    return found


def _ttl_order_ok(body: dict[str, Any]) -> bool:
    ttls = [cc.get("ttl", "5m") for _, cc in _markers(body)]
    return all(not (a != "1h" and b == "1h") for a, b in itertools.pairwise(ttls))


# -- the pure decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "before", "after", "expected"),
    [
        ("5m", [], [], "5m"),
        ("1h", [], [], "1h"),
        ("5m", [], ["1h"], "1h"),  # before the caller's 1h: 1h (bills nothing more)
        ("1h", ["5m"], [], "5m"),  # after the caller's 5m: 5m
        ("1h", ["1h"], ["5m"], "1h"),
        ("5m", ["1h"], ["5m"], "5m"),
        ("5m", ["5m"], ["1h"], None),  # the caller's own markers break the rule: add none
        ("1h", ["5m"], ["1h"], None),
    ],
)
def test_breakpoint_ttl(desired: str, before: list[str], after: list[str], expected: str | None) -> None:
    assert breakpoint_ttl(desired, before, after) == expected


def test_breakpoint_ttl_never_breaks_the_order_rule() -> None:
    for desired in ("5m", "1h"):
        for n_before, n_after in itertools.product(range(3), repeat=2):
            for before in itertools.product(("5m", "1h"), repeat=n_before):
                for after in itertools.product(("5m", "1h"), repeat=n_after):
                    ttl = breakpoint_ttl(desired, before, after)
                    if ttl is None:
                        continue
                    seq = [*before, ttl, *after]
                    caller_ok = all(
                        not (a != "1h" and b == "1h") for a, b in itertools.pairwise([*before, *after])
                    )
                    ours_ok = all(not (a != "1h" and b == "1h") for a, b in itertools.pairwise(seq))
                    assert ours_ok or not caller_ok


# -- the bodies prepare_request makes ------------------------------------------------------------


def test_the_callers_1h_system_marker_is_sent_byte_for_byte_on_every_call() -> None:
    cache = PromptCache()
    own = {"type": "text", "text": LONG, "cache_control": CC1H}
    sim = Simulator()
    for t, question in enumerate(["hi", "how many bags?", "and a seat?"]):
        p = cache.prepare_request(_anthropic([own], question), format="anthropic-messages", tenant="acme")
        assert p.body["system"] == [own]
        assert all(h.where != "$.system[0]" for h in p.plan.hints)
        assert any("system: the caller's cache_control is kept as sent" in d for d in p.plan.decisions)
        # Ours fill free slots only, 1h before the caller's 1h, 5m after it.
        assert _markers(p.body) == [
            ("tools[1]", CC1H),
            ("system[0]", CC1H),
            ("messages[0].content[0]", CC),
        ]
        assert _ttl_order_ok(p.body)
        result = sim.feed(60.0 * t, "anthropic-messages", p.body)
        # The caller's 1h entry is written on the first call and read on the next ones.
        if t == 0:
            assert result.usage.cache_write_tokens_by_ttl.get("1h", 0) > 0
        else:
            assert result.usage.cache_read_tokens > 0


def test_a_callers_5m_marker_keeps_ours_5m_after_it() -> None:
    policy = Policy.load({"entries": {"prompt_prefix": {"ttl": {"default": "1h"}}}})
    body = _anthropic([{"type": "text", "text": LONG}], "hi")
    body["tools"][0]["cache_control"] = dict(CC)
    p = PromptCache(policy).prepare_request(body, format="anthropic-messages", tenant="acme")
    # Without the caller's marker the static breakpoints would be 1h (test_hints); after a 5m one
    # they cannot be.
    assert p.body["tools"][0] == body["tools"][0]
    assert [cc for _, cc in _markers(p.body)] == [CC, CC, CC, CC]
    assert _ttl_order_ok(p.body)


def test_a_callers_1h_marker_on_the_last_message_makes_ours_1h() -> None:
    msg = {"role": "user", "content": [{"type": "text", "text": "a long document", "cache_control": CC1H}]}
    body = _anthropic(LONG, "", messages=[msg])
    p = PromptCache().prepare_request(body, format="anthropic-messages", tenant="acme")
    assert p.body["messages"][0] == msg
    # The conversation's end is the caller's: left to it; ours before it are 1h.
    assert _markers(p.body) == [("tools[1]", CC1H), ("system[0]", CC1H), ("messages[0].content[0]", CC1H)]
    Simulator().feed(0.0, "anthropic-messages", p.body)  # accepted: the order rule holds


def test_a_section_the_caller_closed_leaves_its_slot_to_another() -> None:
    msg = {"role": "user", "content": [{"type": "text", "text": "book me a flight", "cache_control": CC}]}
    body = _anthropic([{"type": "text", "text": LONG, "cache_control": CC}], "", messages=[msg])
    p = PromptCache().prepare_request(body, format="anthropic-messages", tenant="acme")
    # The system and the conversation are the caller's: the free slot goes to the tools.
    assert [h.where for h in p.plan.hints] == ["$.tools[1]"]
    assert p.body["system"] == body["system"] and p.body["messages"] == [msg]
    notes = [d for d in p.plan.decisions if "kept as sent" in d]
    assert notes == [
        "conversation: the caller's cache_control is kept as sent",
        "system: the caller's cache_control is kept as sent",
    ]


def test_a_top_level_1h_marker_bounds_every_breakpoint() -> None:
    body = _anthropic(LONG, "hi", cache_control=CC1H)
    p = PromptCache().prepare_request(body, format="anthropic-messages", tenant="acme")
    assert p.body["cache_control"] == CC1H
    # Before the caller's top-level 1h (it closes the last block), ours are all 1h: 4 in all.
    assert [cc for _, cc in _markers(p.body)] == [CC1H, CC1H, CC1H]
    Simulator().feed(0.0, "anthropic-messages", p.body)


def test_the_simulator_refuses_a_1h_breakpoint_after_a_5m_one() -> None:
    body = _anthropic([{"type": "text", "text": LONG, "cache_control": CC1H}], "hi")
    body["tools"][-1]["cache_control"] = dict(CC)
    with pytest.raises(BreakpointTtlOrder):
        Simulator().feed(0.0, "anthropic-messages", body)


# -- Bedrock Converse ------------------------------------------------------------------------------


def _converse(system: list[dict[str, Any]], tools_point: dict[str, Any] | None = None) -> dict[str, Any]:
    tools: list[dict[str, Any]] = [
        {"toolSpec": {"name": t["name"], "inputSchema": {"json": {}}}} for t in reversed(TOOLS)
    ]
    if tools_point is not None:
        tools.append(tools_point)
    return {
        "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "system": system,
        "toolConfig": {"tools": tools},
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
    }


def test_bedrock_callers_1h_system_point_is_kept_and_ours_fit_around_it() -> None:
    own = {"cachePoint": {"type": "default", "ttl": "1h"}}
    p = PromptCache().prepare_request(
        _converse([{"text": LONG}, own]), format="bedrock-converse", tenant="acme"
    )
    assert p.body["system"] == [{"text": LONG}, own]
    assert p.body["toolConfig"]["tools"][-1] == own  # ours, before the caller's 1h: 1h
    assert p.body["messages"][0]["content"] == [{"text": "hi"}, {"cachePoint": {"type": "default"}}]
    Simulator().feed(0.0, "bedrock-converse", p.body)


def test_bedrock_callers_tool_point_keeps_its_ttl_when_tools_are_reordered() -> None:
    own = {"cachePoint": {"type": "default", "ttl": "1h"}}
    cache = PromptCache()
    for _ in range(3):  # tools are sorted once their order is seen to change: every call the same
        p = cache.prepare_request(_converse([{"text": LONG}], own), format="bedrock-converse", tenant="a")
        assert p.body["toolConfig"]["tools"][-1] == own
        # Ours after the caller's 1h keep the default 5m (shorter after longer is the rule).
        assert p.body["system"][-1] == {"cachePoint": {"type": "default"}}
        Simulator().feed(0.0, "bedrock-converse", p.body)


# -- through the anthropic SDK, against the emulator --------------------------------------------------


def test_through_the_anthropic_sdk_the_callers_markers_reach_the_provider_as_written() -> None:
    anthropic = pytest.importorskip("anthropic")
    from promptcache.lab.emulate import Emulator

    own_system = {"type": "text", "text": LONG, "cache_control": CC1H}
    own_doc = {"type": "text", "text": "A long document. " * 300, "cache_control": CC1H}
    cache = PromptCache()
    with Emulator() as emu:
        client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k", max_retries=0)
        for question in ("hi", "how many bags?"):
            body = _anthropic(
                [own_system],
                "",
                messages=[
                    {"role": "user", "content": [copy.deepcopy(own_doc), {"type": "text", "text": question}]}
                ],
            )
            prepared = cache.prepare_request(body, format="anthropic-messages", tenant="acme")
            client.messages.create(**prepared.body)  # a 400 (1h after 5m, > 4 markers) would raise here
        for i, sent in enumerate(emu.requests):
            assert sent["system"] == [own_system]
            assert sent["messages"][0]["content"][0] == own_doc
            assert _ttl_order_ok(sent)
            usage = emu.usages[i]
            assert usage is not None
            assert (
                usage.cache_write_tokens_by_ttl.get("1h", 0) if i == 0 else usage.cache_read_tokens
            ) > 1000
