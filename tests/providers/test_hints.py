"""Provider hints on the exact request bodies PromptCache produces.

Breakpoint count and placement (caller markers and the 4 limit included), TTL order, catalog
minimums and TTL options, prompt_cache_key stability, OpenAI retention and gpt-5.6 explicit
breakpoints, Bedrock cachePoint placement, and what the policy forbids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from promptcache.catalog import load_catalog
from promptcache.engine import PromptCache
from promptcache.policy import Policy
from promptcache.providers.hints import FALLBACK_MIN_TOKENS, min_cacheable_tokens, openai_retention

from ._replay import request_bodies

LONG = "\n".join(f"Rule {i}: be courteous and precise about fares and baggage." for i in range(120))
CC = {"type": "ephemeral"}
CC1H = {"type": "ephemeral", "ttl": "1h"}
BP = {"mode": "explicit"}
SECRET = "Card 4111 1111 1111 1111 on file."
TOOLS = [
    {"name": "search", "description": "Search flights.", "input_schema": {"type": "object"}},
    {"name": "book", "description": "Book a flight.", "input_schema": {"type": "object"}},
]
CONV = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "book me a flight"},
]


def _ttl_policy(ttl: str) -> Policy:
    return Policy.load({"entries": {"prompt_prefix": {"ttl": {"default": ttl}}}})


def _anthropic(model: str = "claude-sonnet-4-5", system: Any = LONG, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "system": system, "tools": TOOLS, "messages": CONV, **extra}


def _prepare(body: dict[str, Any], fmt: str, policy: Policy | None = None, tenant: str = "t") -> Any:
    return PromptCache(policy).prepare_request(body, format=fmt, tenant=tenant)


def _prepare_after_change(earlier: dict[str, Any], body: dict[str, Any], fmt: str) -> Any:
    """Prepare ``body`` after ``earlier`` (same request, an older clock value) on one cache.

    A detected value moves after the prefix only once its family has seen it change.
    """
    cache = PromptCache()
    cache.prepare_request(earlier, format=fmt, tenant="t")
    return cache.prepare_request(body, format=fmt, tenant="t")


def _count(value: Any, key: str) -> int:
    if isinstance(value, dict):
        return (key in value) + sum(_count(v, key) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v, key) for v in value)
    return 0


# -- catalog --------------------------------------------------------------------------------


def test_minimums_come_from_the_catalog_with_a_fallback() -> None:
    assert min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-20241022") == 2048
    assert min_cacheable_tokens("anthropic.claude-3-5-haiku-20241022-v1:0") == 2048
    assert min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    # null ("UNCONFIRMED") in the catalog, and unknown models: the documented fallback.
    assert min_cacheable_tokens("claude-opus-4-8") == FALLBACK_MIN_TOKENS == 1024
    assert min_cacheable_tokens("my-own-model") == 1024


@pytest.fixture
def gpt56() -> Iterator[None]:
    """gpt-5.6-sol as the packaged catalog lists it: marked explicit (breakpoints)."""
    assert "explicit" in load_catalog().lookup("gpt-5.6-sol").spec.ttl_options
    yield


# -- Anthropic --------------------------------------------------------------------------------


def test_anthropic_exact_placement() -> None:
    out = _prepare(_anthropic(), "anthropic-messages").body
    assert out == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": LONG, "cache_control": CC}],
        # tools in canonical order from the first call (by name), each as the caller wrote it;
        # the last one closes the tools section
        "tools": [TOOLS[1], {**TOOLS[0], "cache_control": CC}],
        "messages": [
            CONV[0],
            CONV[1],
            {"role": "user", "content": [{"type": "text", "text": "book me a flight", "cache_control": CC}]},
        ],
    }


def test_anthropic_breakpoint_before_the_volatile_block() -> None:
    out = _prepare_after_change(
        _anthropic(system=LONG + "\nCurrent date: 2024-05-14"),
        _anthropic(system=LONG + "\nCurrent date: 2024-05-15"),
        "anthropic-messages",
    ).body
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "hello", "cache_control": CC}],
    }
    current = out["messages"][2]["content"]
    assert current[0]["text"].startswith("<volatile_context>") and "cache_control" not in current[0]
    assert current[1] == {"type": "text", "text": "book me a flight"}
    assert _count(out, "cache_control") == 3


def test_anthropic_caller_markers_count_toward_four() -> None:
    system = [{"type": "text", "text": "Intro.", "cache_control": CC}, {"type": "text", "text": LONG}]
    conv = [{"role": "user", "content": [{"type": "text", "text": "doc", "cache_control": CC}]}, *CONV[1:]]
    p = _prepare(_anthropic(system=system, messages=conv), "anthropic-messages")
    out = p.body
    assert _count(out, "cache_control") == 4
    # Budget 2: the conversation end and the system end; the tools get none.
    assert [h.where for h in p.plan.hints] == ["$.system[1]", "$.messages[2].content[0]"]
    assert out["system"] == [system[0], {"type": "text", "text": LONG, "cache_control": CC}]
    assert all("cache_control" not in t for t in out["tools"])
    full = [
        {"role": "user", "content": [{"type": "text", "text": f"d{i}", "cache_control": CC}]}
        for i in range(4)
    ]
    p = _prepare(_anthropic(messages=[*full, {"role": "user", "content": "q"}]), "anthropic-messages")
    assert _count(p.body, "cache_control") == 4 and p.plan.hints == []


def test_anthropic_1h_first_then_5m() -> None:
    out = _prepare(_anthropic(), "anthropic-messages", _ttl_policy("1h")).body
    assert out["tools"][-1]["cache_control"] == CC1H
    assert out["system"][-1]["cache_control"] == CC1H
    assert out["messages"][-1]["content"][-1]["cache_control"] == CC


@pytest.mark.parametrize(
    "model",
    ["zeta-9", "anthropic.claude-3-7-sonnet-20250219-v1:0"],
    ids=["unknown", "bedrock-5m-only"],
)
def test_no_1h_where_the_catalog_lists_none(model: str) -> None:
    out = _prepare(_anthropic(model=model), "anthropic-messages", _ttl_policy("1h")).body
    assert _count(out, "cache_control") == 3
    assert "ttl" not in str(out)


def test_an_unlisted_claude_gets_the_family_ttls() -> None:
    # The catalog's "claude-" family: every Claude model takes the 1h TTL (prompt-caching page),
    # so a Claude id the table does not list yet keeps it (issue 23: family rules, unpriced).
    out = _prepare(_anthropic(model="claude-zeta-9"), "anthropic-messages", _ttl_policy("1h")).body
    assert out["tools"][-1]["cache_control"] == CC1H


def test_anthropic_below_the_catalog_minimum() -> None:
    # ~1750 estimated tokens: enough for Sonnet 4.5 (1024), not for Haiku 4.5 (4096).
    p = _prepare(_anthropic(model="claude-haiku-4-5"), "anthropic-messages")
    assert _count(p.body, "cache_control") == 0 and p.plan.hints == []
    assert any("below the 4096-token minimum of claude-haiku-4-5" in d for d in p.plan.decisions)
    assert _count(_prepare(_anthropic(), "anthropic-messages").body, "cache_control") == 3


# -- Bedrock Converse --------------------------------------------------------------------------


def _converse(model: str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0") -> dict[str, Any]:
    return {
        "modelId": model,
        "system": [{"text": LONG}],
        "toolConfig": {
            "tools": [{"toolSpec": {"name": t["name"], "inputSchema": {"json": {}}}} for t in TOOLS]
        },
        "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in CONV],
    }


def test_bedrock_cache_point_placement() -> None:
    point = {"cachePoint": {"type": "default"}}
    out = _prepare(_converse(), "bedrock-converse").body
    assert out["system"] == [{"text": LONG}, point]
    assert [t.get("toolSpec", {}).get("name") for t in out["toolConfig"]["tools"]] == ["book", "search", None]
    assert out["toolConfig"]["tools"][-1] == point
    assert out["messages"][-1]["content"] == [{"text": "book me a flight"}, point]
    assert _count(out["messages"][:-1], "cachePoint") == 0


def test_bedrock_caller_points_count_toward_four() -> None:
    body = _converse()
    point = {"cachePoint": {"type": "default"}}
    body["messages"] = [{"role": "user", "content": [{"text": f"d{i}"}, point]} for i in range(3)] + [
        {"role": "user", "content": [{"text": "q"}]}
    ]
    out = _prepare(body, "bedrock-converse").body
    assert _count(out, "cachePoint") == 4
    assert out["messages"][-1]["content"] == [{"text": "q"}, point]  # the one left goes on the conversation


# -- OpenAI -------------------------------------------------------------------------------------


def _chat(system: str = LONG, user: str = "hi", model: str = "gpt-4.1") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


def test_prompt_cache_key_stable_per_prompt_start_and_tenant() -> None:
    pc = PromptCache()
    key = [
        pc.prepare_request(_chat(user=u), format="openai-chat", tenant=t).body["prompt_cache_key"]
        for u, t in (("one", "a"), ("two", "a"), ("one", "b"))
    ]

    def key_of(system: str) -> str:
        body = pc.prepare_request(_chat(system), format="openai-chat", tenant="a").body
        return str(body["prompt_cache_key"])

    # It routes: an edit past the prompt's start keeps it, another start changes it.
    assert key[0] == key[1] != key[2]
    assert key_of(LONG + "\nMore.") == key[0] != key_of("Another role.\n" + LONG)
    assert len(key[0]) == 35 and key[0].startswith("pc-")


def test_openai_retention_rule() -> None:
    assert openai_retention(frozenset({"in_memory", "24h"}), 86400) == "24h"
    assert openai_retention(frozenset({"in_memory"}), 86400) is None
    day = _ttl_policy("24h")
    assert _prepare(_chat(), "openai-chat", day).body["prompt_cache_retention"] == "24h"
    assert "prompt_cache_retention" not in _prepare(_chat(), "openai-chat").body  # default 5m policy
    assert "prompt_cache_retention" not in _prepare(_chat(model="gpt-4o"), "openai-chat", day).body
    # A PII class the policy shortens to 1h: no 24h retention.
    email = _prepare(_chat(LONG + "\nContact ops@example.com."), "openai-chat", day)
    assert "prompt_cache_retention" not in email.body and "prompt_cache_key" in email.body
    mine = {**_chat(), "prompt_cache_retention": "in_memory"}
    assert _prepare(mine, "openai-chat", day).body["prompt_cache_retention"] == "in_memory"


def test_openai_secret_in_system_no_key() -> None:
    p = _prepare(_chat(LONG + "\n" + SECRET), "openai-chat", _ttl_policy("24h"))
    assert not {"prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"} & set(p.body)
    assert p.plan.hints == []


@pytest.mark.usefixtures("gpt56")
def test_openai_explicit_breakpoints_chat() -> None:
    conv = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    body = {"model": "gpt-5.6-sol", "messages": [{"role": "system", "content": LONG}, *conv]}
    system = {"role": "system", "content": [{"type": "text", "text": LONG, "prompt_cache_breakpoint": BP}]}
    # Nothing to keep out of the cache: implicit mode stays (its own breakpoint ends the newest
    # message), with one breakpoint at the end of the static prefix for other conversations.
    implicit = _prepare(body, "openai-chat", _ttl_policy("24h"))
    assert implicit.body["messages"] == [system, *conv]
    assert "prompt_cache_options" not in implicit.body
    assert [h.kind for h in implicit.plan.hints] == ["prompt_cache_key", "prompt_cache_breakpoint"]
    # In explicit mode (the caller's here) the conversation's end is marked too.
    p = _prepare({**body, "prompt_cache_options": {"mode": "explicit"}}, "openai-chat", _ttl_policy("24h"))
    out = p.body
    assert out["messages"] == [
        system,
        conv[0],
        conv[1],
        {"role": "user", "content": [{"type": "text", "text": "q2", "prompt_cache_breakpoint": BP}]},
    ]
    assert out["prompt_cache_options"] == {"mode": "explicit"}
    assert "prompt_cache_retention" not in out  # OpenAI rejects it next to prompt_cache_options
    assert [h.kind for h in p.plan.hints] == [
        "prompt_cache_key",
        "prompt_cache_breakpoint",
        "prompt_cache_breakpoint",
    ]
    # Same part shape as the real gpt-5.6 recording.
    recorded = request_bodies("openai_chat__pydantic_ai__prompt_cache_key_e2e.yaml")[0]["messages"][0][
        "content"
    ][0]
    assert set(out["messages"][0]["content"][0]) == set(recorded)
    assert out["messages"][0]["content"][0]["prompt_cache_breakpoint"] == recorded["prompt_cache_breakpoint"]


@pytest.mark.usefixtures("gpt56")
def test_openai_explicit_breakpoints_responses_before_volatile() -> None:
    def body(day: int) -> dict[str, Any]:
        return {
            "model": "gpt-5.6-sol",
            "instructions": LONG + f"\nToday is 2024-05-{day}.",
            "input": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"},
            ],
        }

    out = _prepare_after_change(body(14), body(15), "openai-responses").body
    items = out["input"]
    assert items[-2]["content"].startswith("<volatile_context>")  # developer item, unmarked
    # instructions cannot carry a breakpoint; the conversation one sits before the volatile item
    # (assistant turns are skipped, so it lands on the last user turn before it).
    assert items[0] == {
        "role": "user",
        "content": [{"type": "input_text", "text": "q1", "prompt_cache_breakpoint": BP}],
    }
    assert _count(out, "prompt_cache_breakpoint") == 1
    assert out["prompt_cache_options"] == {"mode": "explicit"}


@pytest.mark.usefixtures("gpt56")
def test_openai_explicit_opt_out_and_caller_limit() -> None:
    p = _prepare(_chat(LONG + "\n" + SECRET, model="gpt-5.6-sol"), "openai-chat")
    assert p.body["prompt_cache_options"] == {"mode": "explicit"}  # no breakpoint: nothing cached
    assert "prompt_cache_key" not in p.body and _count(p.body, "prompt_cache_breakpoint") == 0
    mine = [{"type": "text", "text": f"d{i}", "prompt_cache_breakpoint": BP} for i in range(4)]
    body = {
        "model": "gpt-5.6-sol",
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": mine}],
    }
    out = _prepare(body, "openai-chat").body
    assert _count(out, "prompt_cache_breakpoint") == 4
    assert out["messages"][0] == {"role": "system", "content": LONG}


@pytest.mark.usefixtures("gpt56")
def test_openai_explicit_secret_in_conversation_breaks_at_static_end() -> None:
    body = {
        "model": "gpt-5.6-sol",
        "messages": [
            {"role": "system", "content": LONG},
            {"role": "user", "content": SECRET},
            {"role": "assistant", "content": "noted"},
            {"role": "user", "content": "thanks"},
        ],
    }
    out = _prepare(body, "openai-chat").body
    assert out["messages"][0]["content"][0]["prompt_cache_breakpoint"] == BP
    assert _count(out["messages"][1:], "prompt_cache_breakpoint") == 0
    assert out["prompt_cache_options"] == {"mode": "explicit"}  # no implicit breakpoint past the secret


def test_policy_not_eligible_no_hints() -> None:
    off = Policy.load({"entries": {"prompt_prefix": {"eligible": False}}})
    for body, fmt in (
        (_anthropic(), "anthropic-messages"),
        (_chat(), "openai-chat"),
        (_converse(), "bedrock-converse"),
    ):
        p = _prepare(body, fmt, off)
        assert p.plan.hints == []
        assert _count(p.body, "cache_control") + _count(p.body, "cachePoint") == 0
        assert "prompt_cache_key" not in p.body
