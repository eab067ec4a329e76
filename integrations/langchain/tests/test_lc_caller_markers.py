"""The caller's own ``cache_control`` markers survive promptcache (issue 20, item 2).

A real ``ChatAnthropic`` (through the ``anthropic`` SDK) talks to the emulator; the system block
carries the user's ``cache_control: {"type": "ephemeral", "ttl": "1h"}``. On every call the
emulator must receive that block byte for byte, promptcache's breakpoints must respect the
provider's rule that longer TTLs come first (the emulator refuses a 1h after a 5m, as Anthropic
does), and the provider must report 1h cache writes for the caller's prefix. Through
``CachingChatModel`` and through ``PromptCacheMiddleware`` in ``create_agent``.
"""

from __future__ import annotations

import itertools
from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, SystemMessage
from promptcache_langchain import CachingChatModel, PromptCacheMiddleware

from promptcache import PromptCache

airline_policy, emulator = shared.airline_policy, shared.emulator

CC1H = {"type": "ephemeral", "ttl": "1h"}
CFG = {"configurable": {"tenant_id": "acme"}}


def _markers(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = [t["cache_control"] for t in body.get("tools", []) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        found += [b["cache_control"] for b in system if "cache_control" in b]
    for m in body["messages"]:
        if isinstance(m["content"], list):
            found += [b["cache_control"] for b in m["content"] if "cache_control" in b]
    return found


def _check(emu: Any, own: dict[str, Any]) -> None:
    assert len(emu.requests) == 3 and all(u is not None for u in emu.usages)  # no 400
    for i, body in enumerate(emu.requests):
        assert body["system"] == [own]  # byte for byte, TTL included
        ttls = [cc.get("ttl", "5m") for cc in _markers(body)]
        assert all(not (a != "1h" and b == "1h") for a, b in itertools.pairwise(ttls))
        assert len(ttls) <= 4
        usage = emu.usages[i]
        if i == 0:
            assert usage.cache_write_tokens_by_ttl.get("1h", 0) > 1000  # the caller's 1h entry
        else:
            assert usage.cache_read_tokens > 1000


def test_caching_chat_model_keeps_the_callers_1h_marker(emulator: Any, airline_policy: str) -> None:
    own = {"type": "text", "text": airline_policy, "cache_control": CC1H}
    model = CachingChatModel(make_model("anthropic", emulator.anthropic_base_url, "k"), PromptCache())
    for q in ("Hi", "How many bags?", "And a seat?"):
        model.invoke([SystemMessage(content=[dict(own)]), HumanMessage(q)], config=CFG)
    _check(emulator, own)


async def test_middleware_keeps_the_callers_1h_marker(emulator: Any, airline_policy: str) -> None:
    own = {"type": "text", "text": airline_policy, "cache_control": CC1H}
    agent = create_agent(
        make_model("anthropic", emulator.anthropic_base_url, "k"),
        [],
        system_prompt=SystemMessage(content=[dict(own)]),
        middleware=[PromptCacheMiddleware(PromptCache())],
    )
    for i, q in enumerate(("Hi", "How many bags?", "And a seat?")):
        call = agent.ainvoke if i % 2 else agent.invoke
        out = call({"messages": [HumanMessage(q)]}, CFG)
        if i % 2:
            out = await out
        assert out["cache_metrics"].calls == 1
    _check(emulator, own)


@pytest.mark.parametrize("ours_first", [True, False], ids=["promptcache-first", "promptcache-last"])
def test_with_langchains_own_anthropic_caching_middleware(
    emulator: Any, airline_policy: str, ours_first: bool
) -> None:
    """LangChain's ``AnthropicPromptCachingMiddleware(ttl="1h")`` marks the system prompt, the last
    tool and the request (top-level ``cache_control``): those are the caller's markers, kept as
    they are, wherever promptcache sits in the list, and the provider accepts the result."""
    from langchain_anthropic.middleware import AnthropicPromptCachingMiddleware
    from langchain_core.tools import tool

    @tool
    def get_reservation_details(reservation_id: str) -> str:
        """Get the details of a reservation."""
        return "{}"

    theirs, ours = AnthropicPromptCachingMiddleware(ttl="1h"), PromptCacheMiddleware(PromptCache())
    agent = create_agent(
        make_model("anthropic", emulator.anthropic_base_url, "k"),
        [get_reservation_details],
        system_prompt=airline_policy,
        middleware=[ours, theirs] if ours_first else [theirs, ours],
    )
    for q in ("Hi", "How many bags?"):
        agent.invoke({"messages": [HumanMessage(q)]}, CFG)
    assert len(emulator.requests) == 2 and all(u is not None for u in emulator.usages)  # no 400
    for body in emulator.requests:
        assert body["cache_control"] == CC1H
        assert body["system"][-1]["cache_control"] == CC1H
        assert any(t.get("cache_control") == CC1H for t in body["tools"])
        ttls = [cc.get("ttl", "5m") for cc in _markers(body)]
        assert all(not (a != "1h" and b == "1h") for a, b in itertools.pairwise(ttls))
    assert emulator.usages[1].cache_read_tokens > 1000
