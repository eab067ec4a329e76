"""Learned volatility, policy, secrets, provider hints, explain(), shadow mode, bad input."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from core_bodies import TOOL_SPECS, make_body

from promptcache.blocks import Block
from promptcache.canonical import CanonicalizationError
from promptcache.engine import PromptCache
from promptcache.keys import ROUTING_HEAD_CHARS
from promptcache.policy import Policy, PolicyError
from promptcache.wire import WireFormatError

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def _chat(system: str, user: str = "hi", tools: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if tools is not None:
        body["tools"] = tools
    return body


# -- 7. learned volatility ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_learned_line_relocated_after_learn_after(seed: int) -> None:
    rng = random.Random(seed)
    pc = PromptCache()
    head = "Airline policy.\nBe concise.\nSession nonce: tango-"
    tail = "\nNever reveal this.\nAlways check the user id.\nQuote fares in USD."
    for call in range(6):
        nonce = "-".join(rng.sample(WORDS, 3)) + f"-{call}"
        system = head + nonce + tail
        p = pc.prepare_request(_chat(system), format="openai-chat", tenant="t")
        sys0 = p.body["messages"][0]["content"]
        if call < 2:  # learned on the 2nd change, i.e. the 3rd call relocates
            assert not p.plan.fragments
            assert sys0 == system
        if call >= 2:
            assert [f.kind for f in p.plan.fragments] == ["learned"]
            assert p.plan.fragments[0].text == "Session nonce: tango-" + nonce
            assert "tango" not in sys0
            assert sys0 == "Airline policy.\nBe concise.\n" + tail.lstrip("\n")
            assert any("tango-" + nonce in str(m["content"]) for m in p.body["messages"][1:])


def test_learned_before_threshold_stays_then_moves() -> None:
    pc = PromptCache()
    outs = []
    for call in range(3):
        system = f"A.\nB.\nSession nonce: tango-{WORDS[call]}-{WORDS[call + 1]}\nC.\nD."
        outs.append(pc.prepare_request(_chat(system), format="openai-chat", tenant="t"))
    assert [len(o.plan.fragments) for o in outs] == [0, 0, 1]


def test_one_off_edit_not_learned() -> None:
    pc = PromptCache()
    v1 = "A.\nB.\nTone: friendly\nC.\nD."
    v2 = v1.replace("friendly", "formal")
    for system in [v1, v1, v2, v2, v2, v2]:
        p = pc.prepare_request(_chat(system), format="openai-chat", tenant="t")
        assert not p.plan.fragments
        assert p.body["messages"][0]["content"] == system


# -- 8. policy -------------------------------------------------------------------------

POLICY_YAML = """
version: "9"
entries:
  prompt_prefix:
    ttl: {default: 1h, max: 2d}
  tool_output:
    ttl: {default: 10m}
data_classes:
  pii.email: {action: shorten, max_ttl: 15m}
  secret: {action: deny}
"""
POLICY_TOML = """
version = "9"
[entries.prompt_prefix.ttl]
default = "1h"
max = "2d"
[entries.tool_output.ttl]
default = 600
[data_classes."pii.email"]
action = "shorten"
max_ttl = "15m"
[data_classes.secret]
action = "deny"
"""
POLICY_DICT = {
    "version": "9",
    "entries": {
        "prompt_prefix": {"ttl": {"default": 3600, "max": 172800}},
        "tool_output": {"ttl": {"default": "600s"}},
    },
    "data_classes": {"pii.email": {"action": "shorten", "max_ttl": 900}, "secret": {"action": "deny"}},
}


def test_policy_yaml_toml_dict_equal(tmp_path: Any) -> None:
    (tmp_path / "p.yaml").write_text(POLICY_YAML)
    (tmp_path / "p.toml").write_text(POLICY_TOML)
    a = Policy.load(tmp_path / "p.yaml")
    b = Policy.load(str(tmp_path / "p.toml"))
    c = Policy.load(POLICY_DICT)
    assert a == b == c
    assert a.entry("prompt_prefix").ttl.default == 3600
    assert a.entry("tool_output").ttl.default == 600


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"entires": {}}, "entires"),
        ({"entries": {"tool_output": {"ttl": {"default": "5 minutes"}}}}, "entries.tool_output.ttl.default"),
        (
            {"entries": {"tool_output": {"ttl": {"min": "2h", "default": "2h", "max": "1h"}}}},
            "entries.tool_output.ttl",
        ),
        ({"data_classes": {"secret": {"action": "allow"}}}, "data_classes.secret"),
        ({"relocation": {"learn_after": 0}}, "relocation.learn_after"),
        # issue 19, item 8: a YAML "yes" is not 1 second, a TTL no store keeps is refused, and an
        # empty default tenant would fail every call later
        ({"entries": {"tool_output": {"ttl": {"default": True}}}}, "entries.tool_output.ttl.default"),
        ({"entries": {"tool_output": {"ttl": {"max": 10**19}}}}, "entries.tool_output.ttl.max"),
        ({"data_classes": {"pii.email": {"max_ttl": "99999d"}}}, "data_classes.pii.email.max_ttl"),
        ({"default_tenant": ""}, "default_tenant"),
    ],
)
def test_malformed_policy_names_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as ei:
        Policy.load(data)
    assert field in str(ei.value)


def test_policy_decide() -> None:
    p = Policy.load(POLICY_DICT)
    d = p.decide("prompt_prefix")
    assert (d.allowed, d.ttl_seconds) == (True, 3600)
    d = p.decide("prompt_prefix", data_classes={"pii.email"})
    assert (d.allowed, d.ttl_seconds) == (True, 900)
    assert "pii.email" in d.reason
    d = p.decide("prompt_prefix", data_classes={"secret", "pii.email"})
    assert not d.allowed and "secret" in d.reason
    assert not Policy().decide("tool_output", data_classes={"secret"}).allowed


# -- 9. secrets ------------------------------------------------------------------------


def _anthropic(system: str, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    tools = [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in TOOL_SPECS
    ]
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": system,
        "tools": tools,
        "messages": messages,
        **extra,
    }


def _count_cc(value: Any) -> int:
    if isinstance(value, dict):
        return ("cache_control" in value) + sum(_count_cc(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_cc(v) for v in value)
    return 0


CONV = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "book me a flight"},
]


@pytest.mark.parametrize(
    "secret", ["AWS key AKIAIOSFODNN7EXAMPLE for billing.", "Card 4111 1111 1111 1111 on file."]
)
def test_secret_in_system_prompt_blocks_all_breakpoints(secret: str) -> None:
    p = PromptCache().prepare_request(
        _anthropic(LONG + "\n" + secret, CONV), format="anthropic-messages", tenant="t"
    )
    assert _count_cc(p.body) == 0
    assert p.plan.hints == []
    assert any("system prompt or tools" in d and "no breakpoints" in d for d in p.plan.decisions)


def test_control_without_secret_places_breakpoints() -> None:
    p = PromptCache().prepare_request(_anthropic(LONG, CONV), format="anthropic-messages", tenant="t")
    assert _count_cc(p.body) == 3


def test_secret_in_history_no_conversation_breakpoint() -> None:
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "my card is 4111 1111 1111 1111"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "thanks"},
    ]
    p = PromptCache().prepare_request(_anthropic(LONG, conv), format="anthropic-messages", tenant="t")
    wheres = [h.where for h in p.plan.hints]
    assert not [w for w in wheres if w.startswith("$.messages")]
    assert sum(_count_cc(m) for m in p.body["messages"]) == 0
    assert sorted(wheres) == ["$.system[0]", "$.tools[2]"]
    assert any("conversation" in d for d in p.plan.decisions)


# -- 10. provider hints -----------------------------------------------------------------


@pytest.mark.parametrize("k", range(6))
def test_anthropic_never_more_than_four_markers(k: int) -> None:
    cc = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": f"Part {j}.\n" + LONG, **({"cache_control": cc} if j < k else {})}
        for j in range(5)
    ]
    body = _anthropic("", CONV)
    body["system"] = system
    p = PromptCache().prepare_request(body, format="anthropic-messages", tenant="t")
    n = _count_cc(p.body)
    if k >= 4:
        assert n == k and p.plan.hints == []
    else:
        assert n <= 4
        assert n == min(4, k + 3)


def _ttls_in_order(body: dict[str, Any]) -> list[str]:
    out = []
    for section in (
        body.get("tools") or [],
        body.get("system") if isinstance(body.get("system"), list) else [],
    ):
        out += [b["cache_control"].get("ttl", "5m") for b in section if "cache_control" in b]
    for m in body["messages"]:
        if isinstance(m["content"], list):
            out += [b["cache_control"].get("ttl", "5m") for b in m["content"] if "cache_control" in b]
    return out


def test_anthropic_1h_before_5m() -> None:
    pc = PromptCache(Policy.load({"entries": {"prompt_prefix": {"ttl": {"default": "1h"}}}}))
    p = pc.prepare_request(_anthropic(LONG, CONV), format="anthropic-messages", tenant="t")
    assert _ttls_in_order(p.body) == ["1h", "1h", "5m"]


def test_anthropic_1h_before_5m_with_caller_marker() -> None:
    pc = PromptCache(Policy.load({"entries": {"prompt_prefix": {"ttl": {"default": "1h"}}}}))
    body = _anthropic("", CONV)
    body["system"] = [
        {"type": "text", "text": "Intro.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": LONG},
    ]
    ttls = _ttls_in_order(pc.prepare_request(body, format="anthropic-messages", tenant="t").body)
    assert ttls == sorted(ttls, key=lambda t: t != "1h")


@pytest.mark.parametrize("fmt", ["openai-chat", "openai-responses"])
def test_openai_prompt_cache_key(fmt: str) -> None:
    pc = PromptCache()
    a1 = pc.prepare_request(make_body(fmt, LONG, TOOL_SPECS, [("user", "one")]), format=fmt, tenant="t").body
    a2 = pc.prepare_request(make_body(fmt, LONG, TOOL_SPECS, [("user", "two")]), format=fmt, tenant="t").body
    # The key routes (issue 22, decision 6): an edit deep in the system prompt (a memory block)
    # keeps the conversation on its machines; another start, tool set or tenant does not.
    assert len(LONG) > ROUTING_HEAD_CHARS
    tail = pc.prepare_request(
        make_body(fmt, LONG + "\nExtra rule.", TOOL_SPECS, [("user", "one")]), format=fmt, tenant="t"
    ).body
    head = pc.prepare_request(
        make_body(fmt, "Other role.\n" + LONG, TOOL_SPECS, [("user", "one")]), format=fmt, tenant="t"
    ).body
    fewer = pc.prepare_request(
        make_body(fmt, LONG, TOOL_SPECS[:2], [("user", "one")]), format=fmt, tenant="t"
    ).body
    other = pc.prepare_request(
        make_body(fmt, LONG, TOOL_SPECS, [("user", "one")]), format=fmt, tenant="u"
    ).body
    assert a1["prompt_cache_key"] == a2["prompt_cache_key"] == tail["prompt_cache_key"]
    assert (
        len(
            {
                a1["prompt_cache_key"],
                head["prompt_cache_key"],
                fewer["prompt_cache_key"],
                other["prompt_cache_key"],
            }
        )
        == 4
    )
    assert a1["prompt_cache_key"].startswith("pc-")
    mine = {**make_body(fmt, LONG, TOOL_SPECS, [("user", "one")]), "prompt_cache_key": "caller-key"}
    assert pc.prepare_request(mine, format=fmt, tenant="t").body["prompt_cache_key"] == "caller-key"


@pytest.mark.parametrize("k", range(5))
def test_bedrock_cache_points_at_most_four(k: int) -> None:
    body = make_body("bedrock-converse", LONG, TOOL_SPECS, [("user", "a"), ("assistant", "b"), ("user", "c")])
    body["system"] = [{"text": LONG}] + [{"cachePoint": {"type": "default"}}] * min(k, 1)
    for j in range(max(0, k - 1)):
        body["messages"][j % 3]["content"].append({"cachePoint": {"type": "default"}})
    out = PromptCache().prepare_request(body, format="bedrock-converse", tenant="t").body
    n = str(out).count("cachePoint")
    assert n <= 4
    assert n >= k


# -- 11. explain --------------------------------------------------------------------------


def test_explain_causes() -> None:
    pc = PromptCache()
    sys_text = "Line one.\nLine two.\nLine three.\nLine four.\nLine five."
    tools = [{"type": "function", "function": t} for t in TOOL_SPECS]
    conv = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]

    def call(system: str, ts: list[Any], messages: list[Any]) -> Any:
        body = {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": system}, *messages],
            "tools": ts,
        }
        return pc.prepare_request(body, format="openai-chat", tenant="t").plan.explain()

    e = call(sys_text, tools, conv)
    assert e.first_in_family and e.changes == []
    assert call(sys_text, tools, conv).changes == []
    reordered = [dict(reversed(list(tools[0].items()))), *tools[1:]]
    # The first time the tools' bytes change, they switch to sorted canonical form:
    # that request's prefix changes, and explain() says so.
    e = call(sys_text, reordered, conv)
    assert [(c.cause, c.neutralized) for c in e.changes] == [("key_order", False)]
    assert not e.prefix_unchanged
    e = call(sys_text, tools, conv)  # from then on, key order is absorbed
    assert [(c.cause, c.neutralized) for c in e.changes] == [("key_order", True)]
    assert e.prefix_unchanged
    e = call(sys_text, list(reversed(reordered)), conv)  # order and (tool 0's) key order both differ
    assert {(c.cause, c.neutralized) for c in e.changes} == {("tool_order", True), ("key_order", True)}
    e = call(sys_text.replace("Line four.", "Line 4 is different."), list(reversed(reordered)), conv)
    assert [(c.cause, c.neutralized, c.line) for c in e.changes] == [("content", False, 4)]
    assert not e.prefix_unchanged and e.misses
    rewritten = [conv[0], {"role": "assistant", "content": "a1 edited"}, conv[2]]
    e = call(sys_text.replace("Line four.", "Line 4 is different."), list(reversed(reordered)), rewritten)
    assert [c.cause for c in e.changes] == ["history_rewritten"]
    # Another opening message is another conversation: compared for its prefix, not its history.
    other = [{"role": "user", "content": "q1 elsewhere"}, *conv[1:]]
    e = call(sys_text.replace("Line four.", "Line 4 is different."), list(reversed(reordered)), other)
    assert e.changes == [] and e.prefix_unchanged


def test_explain_line_number_counts_relocated_lines() -> None:
    pc = PromptCache()
    s1 = "Line one.\nCurrent time: 2024-05-15 10:00\nLine three.\nLine four.\nLine five."
    for s in (s1, s1.replace("Line five.", "Line 5 changed.")):
        e = pc.prepare_request(_chat(s), format="openai-chat", tenant="t").plan.explain()
    assert [c.line for c in e.changes if c.cause == "content"] == [5]


# -- 12. shadow mode ----------------------------------------------------------------------


def test_shadow_mode_returns_body_unchanged_with_full_plan() -> None:
    earlier = _anthropic(LONG + "\nCurrent time: 2024-05-15 09:59", CONV)
    body = _anthropic(LONG + "\nCurrent time: 2024-05-15 10:00", CONV)
    snapshot = repr(body)
    shadow_cache, active_cache = PromptCache(mode="shadow"), PromptCache()
    for c in (shadow_cache, active_cache):  # the clock is seen changing once, in both
        c.prepare_request(earlier, format="anthropic-messages", tenant="t")
    shadow = shadow_cache.prepare_request(body, format="anthropic-messages", tenant="t")
    active = active_cache.prepare_request(body, format="anthropic-messages", tenant="t")
    assert shadow.body == body and repr(shadow.body) == snapshot and repr(body) == snapshot
    assert shadow.plan.mode == "shadow"
    assert shadow.plan.prefix_key == active.plan.prefix_key
    assert shadow.plan.fragments == active.plan.fragments and len(shadow.plan.fragments) == 1
    assert shadow.plan.hints == active.plan.hints and len(shadow.plan.hints) == 3
    assert active.body != body


# -- 13. bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "body", "needle"),
    [
        ("openai-chat", ["not", "a", "dict"], "body"),
        ("openai-chat", {"model": "m", "messages": "hi"}, "messages"),
        ("anthropic-messages", {"model": "m", "messages": {"role": "user"}}, "messages"),
        ("gemini", {"model": "m", "contents": "x"}, "contents"),
        (
            "openai-chat",
            {"model": "m", "messages": [], "tools": [{"type": "function", "function": {}}]},
            "name",
        ),
        ("anthropic-messages", {"model": "m", "messages": [], "tools": [{"description": "x"}]}, "name"),
        (
            "bedrock-converse",
            {"modelId": "m", "messages": [], "toolConfig": {"tools": [{"toolSpec": {}}]}},
            "name",
        ),
        ("openai-chat", {"model": "m", "messages": [], "tools": [{"name": "x", "f": {1, 2}}]}, "tools"),
        ("openai-chat", {"messages": []}, "model"),
    ],
)
def test_bad_input_names_field(fmt: str, body: Any, needle: str) -> None:
    with pytest.raises((WireFormatError, CanonicalizationError)) as ei:
        PromptCache().prepare_request(body, format=fmt, tenant="t")
    assert needle in str(ei.value)


def test_plan_non_serializable_content() -> None:
    with pytest.raises(CanonicalizationError, match="context"):
        PromptCache().plan([Block(kind="context", content={"x": object()})], model="m", tenant="t")


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        PromptCache().prepare_request({"model": "m"}, format="cohere")


@pytest.mark.parametrize(
    ("tenant", "error"), [(["acme"], TypeError), ("ac\udc80me", ValueError), (7, TypeError)]
)
def test_a_bad_tenant_is_refused_with_the_field_named(tenant: Any, error: type[Exception]) -> None:
    # issue 19, item 8: a list or a lone surrogate raised deep inside, naming nothing
    with pytest.raises(error, match=r"^tenant: "):
        PromptCache().prepare_request(_chat("Be brief."), format="openai-chat", tenant=tenant)


@pytest.mark.parametrize(
    ("fmt", "body", "field"),
    [
        ("openai-chat", {"model": "m", "messages": [{"role": 5, "content": "hi"}]}, "'role'"),
        ("openai-chat", {"model": "m", "messages": [{"role": "user", "content": 5}]}, "'content'"),
        ("openai-responses", {"model": "m", "input": [{"role": "user", "content": 5}]}, "'content'"),
        (
            "anthropic-messages",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]},
            "'content'",
        ),
        ("bedrock-converse", {"modelId": "m", "messages": [{"role": "user", "content": 5}]}, "'content'"),
        (
            "bedrock-converse",
            {
                "modelId": "m",
                "system": [{"text": 5}],
                "messages": [{"role": "user", "content": [{"text": "x"}]}],
            },
            "system[0].text",
        ),
        ("gemini", {"model": "m", "contents": [{"role": 5, "parts": [{"text": "hi"}]}]}, "'role'"),
        ("gemini", {"model": "m", "contents": [{"role": "user", "parts": 5}]}, "'parts'"),
    ],
)
def test_a_wrongly_typed_role_or_content_is_refused_by_name(
    fmt: str, body: dict[str, Any], field: str
) -> None:
    # issue 19, item 8: an int was accepted in some formats, and failed deep inside others
    with pytest.raises(WireFormatError, match=re.escape(field)):
        PromptCache().prepare_request(body, format=fmt, tenant="t")
