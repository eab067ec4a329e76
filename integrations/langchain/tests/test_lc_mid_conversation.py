"""A real ChatAnthropic under CachingChatModel whose tool set grows mid-conversation (issue 23):
with ``mid_conversation_tools`` the added tool is a ``tool_addition`` and the cached prefix is
read; with ``cache_diagnostics`` every request names the previous answer and the provider's
verdict reaches the response metadata. The tau-bench airline policy and tools, over HTTP to the
emulator."""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from promptcache_langchain import CachingChatModel

from promptcache import PromptCache

airline_policy, airline_tools, emulator = shared.airline_policy, shared.airline_tools, shared.emulator
CONFIG: dict[str, Any] = {"configurable": {"tenant_id": "acme"}}


def _run(emu: Any, policy: str, tools: list[dict[str, Any]], cache: PromptCache) -> list[dict[str, Any]]:
    """Three turns of one conversation; the tool set grows by one at the second turn."""
    inner = ChatAnthropic(
        model="claude-opus-5-5", api_key="k", base_url=emu.anthropic_base_url, max_retries=0
    )
    model = CachingChatModel(inner, cache)
    history: list[BaseMessage] = [SystemMessage(policy), HumanMessage("I want to change my flight")]
    metas = []
    for n_tools in (5, 6, 6):
        reply = model.bind_tools(tools[:n_tools]).invoke(history, config=CONFIG)
        metas.append(reply.response_metadata["promptcache"])
        history = [*history, AIMessage(str(reply.content) or "ok"), HumanMessage("next")]
    return metas


def test_a_tool_added_mid_conversation_keeps_the_cache(
    emulator: Any, airline_policy: str, airline_tools: list[dict[str, Any]]
) -> None:
    emulator.reset()
    off = _run(emulator, airline_policy, airline_tools, PromptCache())
    assert "diagnostics" not in emulator.requests[1]
    assert all(m["role"] != "system" for m in emulator.requests[1]["messages"])
    emulator.reset()
    cache = PromptCache(cache_diagnostics=True, mid_conversation_tools=True)
    on = _run(emulator, airline_policy, airline_tools, cache)
    second = emulator.requests[1]
    assert [t.get("defer_loading", False) for t in second["tools"]] == [False] * 5 + [True]
    assert second["messages"][-1]["role"] == "system"
    assert second["messages"][-1]["content"][0]["type"] == "tool_addition"
    # Without the option only the tools before the new one are read back (the system prompt
    # after them is a miss); with it, everything the first turn wrote.
    assert off[1]["input_tokens"] > on[1]["cache_read_tokens"] > 2 * off[1]["cache_read_tokens"]
    assert on[2]["cache_read_tokens"] > on[1]["cache_read_tokens"]
    # Diagnostics chained on every request; nothing diverged, so no provider reason.
    assert emulator.requests[0]["diagnostics"] == {"previous_message_id": None}
    assert emulator.requests[2]["diagnostics"]["previous_message_id"].startswith("msg_")
    assert all("provider_miss_reason" not in m for m in on)
