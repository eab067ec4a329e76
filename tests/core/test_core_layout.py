"""The layout step is one set of rules: what the engine sends is what ``layout`` would arrange.

``PromptCache.prepare_request`` lays a wire request out with :func:`promptcache.layout.wire_sections`
(the format fixes where system text, tools and messages go); ``PromptCache.plan`` orders loose
blocks with :func:`promptcache.layout.arrange`. Both apply :func:`promptcache.layout.section_of`
and :func:`promptcache.layout.tool_order`, so a wire request's plan is already in the order
``arrange`` gives, with the same sections: the tests below hold the two to that.
"""

from __future__ import annotations

import pytest
from core_bodies import FORMATS, TOOL_SPECS, make_body

from promptcache import PromptCache
from promptcache.layout import arrange, tool_order, wire_sections

CONV = [("user", "hello"), ("assistant", "hi, how can I help?"), ("user", "book a flight")]


def _system(turn: int) -> str:
    # A clock line that changes on every call: the family learns to move it out.
    return f"You are a travel agent.\nCurrent time: 2024-03-05T10:{turn:02d}:00Z\nBe brief."


@pytest.mark.parametrize("fmt", FORMATS)
def test_wire_plan_is_already_arranged(fmt: str) -> None:
    cache = PromptCache()
    tools = list(reversed(TOOL_SPECS))  # the caller's order is not the layout's
    plans = [
        cache.prepare_request(make_body(fmt, _system(turn), tools, CONV), format=fmt, tenant="t").plan
        for turn in range(3)
    ]
    plan = plans[-1]
    assert "volatile" in plan.sections, "the clock line was not relocated: the test checks nothing"
    arranged, moves = arrange(plan.blocks)
    assert moves == []
    assert [section for _, section in arranged] == plan.sections
    n_static = plan.sections.count("static")
    assert plan.prefix_end == n_static
    # static, then history, then the volatile block, then the current turn
    assert plan.sections == (
        ["static"] * n_static
        + ["history"] * plan.sections.count("history")
        + ["volatile"]
        + ["current"] * plan.sections.count("current")
    )


def test_arrange_sorts_tools_with_the_wire_rule() -> None:
    cache = PromptCache()
    body = make_body("anthropic-messages", "You are a travel agent.", list(reversed(TOOL_SPECS)), CONV)
    # Two calls with the tools reshuffled: the family then sends them in tool_order's order.
    cache.prepare_request(body, format="anthropic-messages", tenant="t")
    body["tools"] = [body["tools"][i] for i in (1, 2, 0)]
    sent = cache.prepare_request(body, format="anthropic-messages", tenant="t").body
    names = [t["name"] for t in body["tools"]]
    assert [t["name"] for t in sent["tools"]] == [names[i] for i in tool_order(names, pin=False)]
    assert tool_order(names, pin=True) == [0, 1, 2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_wire_sections_of_a_growing_history_are_the_rule(fmt: str) -> None:
    """The history's sections come from its analysis (once per message): on a conversation that
    grows by a turn per call, with a tool result in it and a relocated clock line, they are
    still :func:`wire_sections` of the blocks sent."""
    cache = PromptCache()
    conv: list[tuple[str, str]] = []
    seen: set[str] = set()
    for turn in range(4):
        conv += [("user", f"question {turn}")]
        body = make_body(fmt, _system(turn), TOOL_SPECS, conv)
        plan = cache.prepare_request(body, format=fmt, tenant="t").plan
        current_from = len(plan.sections) - plan.sections.count("current")
        assert plan.sections == wire_sections(plan.blocks, current_from)
        seen.update(plan.sections)
        conv += [("assistant", f"answer {turn}")]
    assert {"static", "history", "volatile", "current"} <= seen, seen
