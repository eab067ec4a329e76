"""``explain.describe``: the text of an explanation, built only when something changed.

Integrations put ``str(plan.explain())`` in every answer's metadata; ``describe`` (and the
``Plan.explain_text``, which feeds it the plan's snapshots) must give exactly that text
whatever changed, and skip building the explanation in the usual case (nothing changed).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import PromptCache, WireFormat
from promptcache import explain as ex
from promptcache.explain import SlotPrint, Snapshot, compare, describe

_SMALL = st.integers(0, 2)
_SLOT = st.builds(
    SlotPrint,
    label=st.sampled_from(["system[0]", "system[1]"]),
    raw=_SMALL,
    canonical=st.sampled_from(["a", "b"]),
    lines=st.lists(_SMALL, max_size=3),
    line_numbers=st.lists(st.integers(1, 9), max_size=3),
    volatile=st.lists(st.tuples(st.sampled_from(["date", "learned_id"]), st.integers(1, 5)), max_size=2),
)
_TOOLS = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True)


@st.composite
def _snapshot(draw: st.DrawFn) -> Snapshot:
    order = draw(_TOOLS)
    return Snapshot(
        system=draw(st.lists(_SLOT, max_size=2)),
        tool_order=order,
        tool_raw={n: draw(_SMALL) for n in order},
        tool_canonical={n: draw(st.sampled_from(["x", "y"])) for n in order},
        history=draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), max_size=3)),
        tools_canonical=draw(st.booleans()),
    )


@st.composite
def _pair(draw: st.DrawFn) -> tuple[Snapshot, Snapshot]:
    prev = draw(_snapshot())
    if draw(st.booleans()):
        return prev, draw(_snapshot())
    # The engine's usual next snapshot: parts handed on as the same objects, others equal
    # copies, some replaced, the history usually one turn longer.
    cur = Snapshot(
        system=draw(st.sampled_from([prev.system, list(prev.system), copy.deepcopy(prev.system)])),
        tool_order=draw(
            st.sampled_from([prev.tool_order, list(prev.tool_order), list(reversed(prev.tool_order))])
        ),
        tool_raw=draw(st.sampled_from([prev.tool_raw, dict(prev.tool_raw)])),
        tool_canonical=prev.tool_canonical,
        history=prev.history + draw(st.lists(st.sampled_from(["h1", "h4"]), max_size=2)),
        tools_canonical=draw(st.sampled_from([prev.tools_canonical, True])),
    )
    if draw(st.booleans()) and cur.tool_raw:
        name = draw(st.sampled_from(sorted(cur.tool_raw)))
        cur.tool_raw = {**cur.tool_raw, name: cur.tool_raw[name] + 1}
    return prev, cur


@settings(max_examples=1000, deadline=None)
@given(_pair())
def test_describe_is_the_text_of_compare(pair: tuple[Snapshot, Snapshot]) -> None:
    prev, cur = pair
    assert describe("fam", prev, cur) == str(compare("fam", prev, cur))


def test_describe_of_a_first_request() -> None:
    cur = Snapshot()
    assert describe("fam", None, cur) == str(compare("fam", None, cur))
    assert describe("fam", None, None) == "first request of this prefix family: nothing cached yet"


def _body(turn: str, *, tools: list[dict[str, Any]], system: str, history: list[str]) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i, h in enumerate(history):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": h})
    msgs.append({"role": "user", "content": turn})
    return {"model": "gpt-4o", "messages": msgs, "tools": tools}


def _tool(name: str, *, desc: str = "does a thing", keys_reversed: bool = False) -> dict[str, Any]:
    params = {"type": "object", "properties": {"x": {"type": "string"}}}
    fn: dict[str, Any] = {"name": name, "description": desc, "parameters": params}
    if keys_reversed:
        fn = dict(reversed(list(fn.items())))
    return {"type": "function", "function": fn}


_SYSTEM = "You are a careful airline agent.\n" + "Follow the policy exactly.\n" * 200
_SEQUENCE: list[dict[str, Any]] = [
    {},  # first request
    {},  # a new turn: the usual case
    {"history": ["hi", "hello"]},  # the conversation goes on
    {"tools": [_tool("b"), _tool("a")]},  # tool order
    {"tools": [_tool("a", keys_reversed=True), _tool("b")]},  # key order
    {"tools": [_tool("a", desc="does another thing"), _tool("b")]},  # a schema changed
    {"tools": [_tool("a")]},  # a tool removed
    {"system": _SYSTEM + "Today is 2025-01-02.\n"},  # a new line in the system prompt
    {"system": _SYSTEM + "Today is 2025-01-03.\n"},  # a value that moves
    {"system": _SYSTEM + "Today is 2025-01-04.\n"},
    {"system": _SYSTEM.replace("\n", "\r\n")},  # newline style
    {"history": ["hi there", "hello"]},  # history rewritten
    {},
]


def test_the_bridge_gives_the_text_of_plan_explain_along_a_conversation() -> None:
    cache = PromptCache()
    state: dict[str, Any] = {"tools": [_tool("a"), _tool("b")], "system": _SYSTEM, "history": []}
    texts = []
    for i, change in enumerate(_SEQUENCE):
        state.update(change)
        prepared = cache.prepare_request(
            _body(f"turn {i}", **state), format=WireFormat.OPENAI_CHAT, tenant="acme"
        )
        want = str(prepared.plan.explain())
        assert prepared.plan.explain_text() == want, (i, change)
        texts.append(want)
    # The sequence exercises both paths: the unchanged text and explanations of changes.
    assert texts[0].startswith("first request")
    assert texts[1] == "cacheable prefix unchanged since the last request"
    assert sum(t.startswith("cacheable prefix changed") for t in texts) >= 3


def test_the_usual_next_request_is_described_without_an_explanation(monkeypatch: Any) -> None:
    cache = PromptCache()
    state: dict[str, Any] = {"tools": [_tool("a"), _tool("b")], "system": _SYSTEM, "history": ["hi", "ok"]}
    cache.prepare_request(_body("one", **state), format=WireFormat.OPENAI_CHAT, tenant="acme")
    plan = cache.prepare_request(_body("two", **state), format=WireFormat.OPENAI_CHAT, tenant="acme").plan

    def no_compare(*args: Any) -> Any:
        raise AssertionError("compare() ran for an unchanged prefix")

    monkeypatch.setattr(ex, "compare", no_compare)
    assert plan.explain_text() == "cacheable prefix unchanged since the last request"
