"""``PromptCacheModelOnlyMiddleware``: model calls only, for agents whose tools are provider built-ins.

``create_agent`` treats dict tools as provider built-ins (no tool node), but adds a tool node as
soon as any middleware hooks tool calls and then routes the model's tool calls to it. The
model-only middleware must leave that graph as it is, and still rewrite every model request and
fill ``cache_metrics``; the full middleware is the one that adds the node.
"""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import base_url, make_model
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from promptcache_langchain import PromptCacheMiddleware, PromptCacheModelOnlyMiddleware

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

trajectory = shared.trajectory


def _schemas() -> list[dict[str, Any]]:
    # Two of the airline tools, as the OpenAI function dicts an app would pass straight through.
    return [
        {
            "type": "function",
            "function": {
                "name": "get_user_details",
                "description": "Get the details of a user.",
                "parameters": {
                    "type": "object",
                    "properties": {"user_id": {"type": "string"}},
                    "required": ["user_id"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_reservation_details",
                "description": "Get the details of a reservation.",
                "parameters": {
                    "type": "object",
                    "properties": {"reservation_id": {"type": "string"}},
                    "required": ["reservation_id"],
                },
            },
        },
    ]


def _tool_node(agent: Any) -> bool:
    return "tools" in agent.get_graph().nodes


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_model_only_middleware_keeps_built_in_tools_with_the_caller(
    trajectory: list[dict[str, Any]], use_async: bool
) -> None:
    script = [{"tool_calls": [{"name": "get_user_details", "arguments": {"user_id": "sara_doe_496"}}]}]
    cache = PromptCache()
    config = {"configurable": {"tenant_id": "acme"}}
    system = trajectory[0]["content"]
    with Emulator(script=script) as emu:
        model = make_model("openai", base_url(emu, "openai"), "k")
        full = create_agent(model, tools=_schemas(), middleware=[PromptCacheMiddleware(cache)])
        agent = create_agent(
            model,
            tools=_schemas(),
            system_prompt=system,
            middleware=[PromptCacheModelOnlyMiddleware(cache)],
        )
        assert _tool_node(full) and not _tool_node(agent)

        state = {"messages": [HumanMessage("What is in my profile? I am sara_doe_496.")]}
        final = await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)

        # The model's call of a built-in tool ends the run, as it does without the middleware.
        last = final["messages"][-1]
        assert isinstance(last, AIMessage) and last.tool_calls[0]["name"] == "get_user_details"
        assert len(emu.requests) == 1
        sent = emu.requests[0]
        assert sent["prompt_cache_key"].startswith("pc-")
        # The caller's tools, in canonical (name) order from the first call.
        assert [t["function"]["name"] for t in sent["tools"]] == [
            "get_reservation_details",
            "get_user_details",
        ]
        metrics = final["cache_metrics"]
        assert isinstance(metrics, CacheMetrics) and metrics.calls == 1
        assert {r.tenant for r in metrics.records.values()} == {"acme"}
