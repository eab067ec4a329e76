"""Tools in canonical order from the first call (issue 22, decision 4).

Properties, in every wire format that carries tools:

* whatever order a fixed tool set comes in, call after call, every call sends the same tool
  bytes, the first included, and each tool as the caller wrote it;
* a pinned order (``layout.pin_tool_order``) is never changed;
* when the tool set grows or shrinks, the new set keeps the order already sent for the tools it
  kept, and its new tools come after them;
* a process that meets a grown set after another process decided its order sends that order
  (shared through the store, decision 7).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import orjson
from core_bodies import FORMATS, make_body
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import PromptCache
from promptcache.pipeline.learning import canonical_tool_order

WITH_TOOLS = FORMATS  # every wire format carries tools


def _tools(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"tool_{i:02d}",
            "description": f"Tool number {i}.",
            # The caller's key order (not sorted): sent as it is until it changes.
            "parameters": {"type": "object", "properties": {f"arg_{i}": {"type": "string"}}},
        }
        for i in range(n)
    ]


def _sent_tools(fmt: str, body: dict[str, Any]) -> list[Any]:
    if fmt == "gemini":  # one declaration list
        return [d for t in body["tools"] for d in t["functionDeclarations"]]
    return list(body["toolConfig"]["tools"] if fmt == "bedrock-converse" else body["tools"])


def _name(fmt: str, tool: dict[str, Any]) -> str:
    if fmt == "openai-chat":
        return str(tool["function"]["name"])
    if fmt == "bedrock-converse":
        return str(tool["toolSpec"]["name"])
    return str(tool["name"])


def _prepare(cache: PromptCache, fmt: str, tools: list[dict[str, Any]], turn: int) -> list[Any]:
    conv = [
        ("user", f"question {k}") if k % 2 == 0 else ("assistant", f"answer {k}") for k in range(turn + 1)
    ]
    body = make_body(fmt, "You are a booking agent.\nBe brief.", tools, conv)
    return _sent_tools(fmt, cache.prepare_request(body, format=fmt, tenant="t").body)


@settings(max_examples=40, deadline=None)
@given(
    fmt=st.sampled_from(WITH_TOOLS),
    orders=st.lists(st.permutations(list(range(6))), min_size=2, max_size=6),
)
def test_any_permutation_sequence_sends_one_tool_list(fmt: str, orders: list[list[int]]) -> None:
    tools = _tools(6)
    cache = PromptCache()
    sent = [_prepare(cache, fmt, [tools[i] for i in order], turn) for turn, order in enumerate(orders)]
    first = orjson.dumps(sent[0])
    assert all(orjson.dumps(s) == first for s in sent[1:])
    # The caller's bytes for each tool (its key order), laid out by name.
    names = [_name(fmt, t) for t in sent[0]]
    assert names == sorted(names)
    alone = _sent_tools(fmt, make_body(fmt, "x", sorted(tools, key=lambda t: t["name"]), []))
    assert first == orjson.dumps(alone)


@settings(max_examples=30, deadline=None)
@given(
    fmt=st.sampled_from(WITH_TOOLS),
    orders=st.lists(st.permutations(list(range(5))), min_size=1, max_size=5),
)
def test_a_pinned_order_is_never_changed(fmt: str, orders: list[list[int]]) -> None:
    tools = _tools(5)
    cache = PromptCache({"layout": {"pin_tool_order": True}})
    for turn, order in enumerate(orders):
        sent = _prepare(cache, fmt, [tools[i] for i in order], turn)
        assert [_name(fmt, t) for t in sent] == [tools[i]["name"] for i in order]


@st.composite
def _tool_sets(draw: st.DrawFn) -> list[list[int]]:
    """A sequence of tool sets (indices into 10 tools), each with a random caller order."""
    sets = [draw(st.permutations(list(range(10))))[: draw(st.integers(1, 10))]]
    for _ in range(draw(st.integers(1, 5))):
        prev = list(sets[-1])
        removed = draw(st.lists(st.sampled_from(prev), unique=True, max_size=len(prev) - 1))
        absent = [i for i in range(10) if i not in prev]
        added = draw(st.lists(st.sampled_from(absent), unique=True)) if absent else []
        kept = [i for i in prev if i not in removed]
        sets.append(draw(st.permutations(kept + added)))
    return sets


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(WITH_TOOLS), sets=_tool_sets())
def test_growth_keeps_the_previous_order_as_prefix(fmt: str, sets: list[list[int]]) -> None:
    tools = _tools(10)
    cache = PromptCache()
    seen: dict[frozenset[int], list[str]] = {}
    previous: list[str] | None = None
    for turn, chosen in enumerate(sets):
        names = [_name(fmt, t) for t in _prepare(cache, fmt, [tools[i] for i in chosen], turn)]
        key = frozenset(chosen)
        if key in seen:  # a set seen before keeps the order it was given (no flip)
            assert names == seen[key]
        elif previous is not None and set(previous) <= set(names):  # grown: appended
            assert names[: len(previous)] == previous
            assert names[len(previous) :] == sorted(set(names) - set(previous))
        elif not seen:
            assert names == sorted(names)
        else:  # shrunk or changed: the order of an earlier set, then the new tools by name
            assert any(
                names[: len(kept)] == kept and names[len(kept) :] == sorted(set(names) - set(kept))
                for kept in ([n for n in order if n in names] for order in seen.values())
            )
        seen.setdefault(key, names)
        previous = names


def test_canonical_order_prefers_the_recent_order_sharing_most() -> None:
    # Two agents of one tenant interleave; a third set grows the first: it keeps the first's order.
    a = ("search", "book", "cancel")
    b = ("weather", "maps")
    assert canonical_tool_order(["cancel", "alert", "book", "search"], [b, a]) == (*a, "alert")
    assert canonical_tool_order(["maps", "x"], [b, a]) == ("maps", "x")
    assert canonical_tool_order(["z", "y"], [b, a]) == ("y", "z")
    # A repeated name keeps its occurrences.
    assert canonical_tool_order(["b", "a", "b"], [("b", "a")]) == ("b", "a", "b")


def test_a_second_process_sends_the_grown_order_the_first_decided(tmp_path: Path) -> None:
    # Two engines on one store stand for two worker processes (test_core_fleet runs processes):
    # the one that never saw the smaller set sends the order the other decided for the grown
    # set, not its own sort.
    location = str(tmp_path / "cache")
    tools = _tools(4)
    first = PromptCache(store=location, record_stats=False)
    grown = [copy.deepcopy(tools[i]) for i in (3, 1, 0)]
    _prepare(first, "openai-chat", [tools[3], tools[1]], 0)
    decided = [_name("openai-chat", t) for t in _prepare(first, "openai-chat", grown, 1)]
    assert decided == ["tool_01", "tool_03", "tool_00"]
    alone = PromptCache(record_stats=False)  # no shared store: its own sort
    assert [_name("openai-chat", t) for t in _prepare(alone, "openai-chat", grown, 1)] == sorted(decided)
    deadline = time.monotonic() + 20
    while True:  # the decision is written in the background
        second = PromptCache(store=location, record_stats=False)
        got = [_name("openai-chat", t) for t in _prepare(second, "openai-chat", grown, 1)]
        second.close()
        if got == decided or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == decided
    first.close()


def test_explain_says_a_reshuffle_is_neutralized_and_names_an_edited_tool() -> None:
    cache = PromptCache()
    tools = _tools(3)

    def explain(ts: list[dict[str, Any]], turn: int) -> Any:
        body = make_body("openai-chat", "You are a booking agent.", ts, [("user", f"q{turn}")])
        return cache.prepare_request(body, format="openai-chat", tenant="t").plan.explain()

    explain(tools, 0)
    e = explain(list(reversed(tools)), 1)
    assert [(c.cause, c.neutralized) for c in e.changes] == [("tool_order", True)] and e.prefix_unchanged
    edited = [*tools[:2], {**tools[2], "description": "Tool number 2, edited."}]
    e = explain(edited, 2)
    # Against the previous (reversed) call: the order again, neutralized, and the edit.
    assert [(c.cause, c.neutralized) for c in e.changes] == [("content", False), ("tool_order", True)]
    assert "tool_02" in e.changes[0].detail and not e.prefix_unchanged
