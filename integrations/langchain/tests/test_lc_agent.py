"""PromptCacheMiddleware in a real ``create_agent`` over the tau-bench airline policy and tools.

The emulator plays the model with the real recorded GPT-4o assistant turns of trajectory task 2
(tool calls included); the tools answer with the recorded tool outputs. The same agent without
the middleware runs the same script against a second emulator: its bodies are the reference,
and each body the cached agent sent must be ``prepare_request`` of the matching reference body.
"""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import (
    base_url,
    clock_relocated,
    has_cache_control,
    has_clock,
    make_model,
    recorded_tools,
    script_from_trajectory,
    stamp,
    system_text,
    wire_format,
)
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware, ModelRequest, dynamic_prompt
from langchain_core.messages import HumanMessage
from promptcache_langchain import PromptCacheMiddleware

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics
from promptcache.stats import recorder_for

# traj[1] and traj[3] are the user's first two turns; the assistant turns up to index 13 answer them.
# The emulator is a separate piece of work: skip, not error, where it is not there yet.
Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

STOP = 13

# The shared fixtures, registered here: no conftest.py, which would collide with other
# integrations' conftest.py files when their test folders run in one pytest session.
airline_tools, trajectory = shared.airline_tools, shared.trajectory


def _clock_prompt(policy: str) -> Any:
    """LangChain's own dynamic-prompt middleware, stamping a clock that moves one minute per call."""
    calls = iter(range(60))

    @dynamic_prompt
    def prompt(request: ModelRequest[Any]) -> str:
        return stamp(policy, next(calls))

    return prompt


def _agent(provider: str, emu: Any, key: str, traj: list[dict[str, Any]], schemas: Any, mw: list[Any]) -> Any:
    # PromptCacheMiddleware last, as most apps put it (anywhere works: test_lc_names_and_order).
    return create_agent(
        make_model(provider, base_url(emu, provider), key),
        tools=recorded_tools(schemas, traj),
        middleware=[_clock_prompt(traj[0]["content"]), *mw],
    )


async def _run(agent: Any, traj: list[dict[str, Any]], config: dict[str, Any], use_async: bool) -> Any:
    state: dict[str, Any] = {"messages": [HumanMessage(traj[1]["content"])]}
    for user_turn in (None, traj[3]["content"]):
        if user_turn is not None:
            state = {**state, "messages": [*state["messages"], HumanMessage(user_turn)]}
        state = await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)
    return state


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_agent_requests_and_final_metrics(
    trajectory: list[dict[str, Any]], airline_tools: Any, provider: str, use_async: bool
) -> None:
    script = script_from_trajectory(trajectory, 0, STOP)
    assert len(script) == 6 and "tool_calls" in script[1]
    cache, reference = PromptCache(), PromptCache()
    config = {"configurable": {"tenant_id": "acme"}}
    with Emulator(script=script) as bare_emu, Emulator(script=script) as emu:
        bare = _agent(provider, bare_emu, "k", trajectory, airline_tools, [])
        await _run(bare, trajectory, {}, use_async)
        agent = _agent(provider, emu, "k", trajectory, airline_tools, [PromptCacheMiddleware(cache)])
        final = await _run(agent, trajectory, config, use_async)

        assert len(emu.requests) == len(bare_emu.requests) == 6
        keys: list[str] = []
        for i, (sent_bare, sent) in enumerate(zip(bare_emu.requests, emu.requests, strict=True)):
            expected = reference.prepare_request(sent_bare, format=wire_format(provider), tenant="acme").body
            assert sent == expected
            assert has_clock(system_text(sent_bare))
            if i >= 1:  # the clock has been seen to move: out of the stable prefix
                assert clock_relocated(sent)
            if provider == "openai":
                keys.append(sent["prompt_cache_key"])
            else:
                assert has_cache_control(sent)
        if provider == "openai":
            # One tenant, one stable prefix: one routing key once the clock is out of the prefix.
            assert len(set(keys[1:])) == 1
        # The recorded conversation was replayed: the last answer is the recorded one.
        assert final["messages"][-1].content == trajectory[STOP - 1]["content"]

        metrics = final["cache_metrics"]
        assert isinstance(metrics, CacheMetrics)
        assert metrics.calls == 6
        assert metrics.input_tokens == sum(u.input_tokens for u in emu.usages)
        assert metrics.cache_read_tokens == sum(u.cache_read_tokens for u in emu.usages)
        assert metrics.cache_write_tokens == sum(u.cache_write_tokens for u in emu.usages)
        assert metrics.cache_read_tokens > 0 and metrics.cost_avoided_usd > 0
        assert {r.tenant for r in metrics.records.values()} == {"acme"}
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == 6


async def test_agent_refuses_missing_tenant(trajectory: list[dict[str, Any]], airline_tools: Any) -> None:
    cache = PromptCache({"require_tenant": True})
    with Emulator(script=script_from_trajectory(trajectory, 0, STOP)) as emu:
        agent = _agent("openai", emu, "k", trajectory, airline_tools, [PromptCacheMiddleware(cache)])
        with pytest.raises(ValueError, match="requires a tenant"):
            agent.invoke({"messages": [HumanMessage(trajectory[1]["content"])]})
        assert emu.requests == []


async def test_two_tenants_two_keys(trajectory: list[dict[str, Any]], airline_tools: Any) -> None:
    cache = PromptCache()
    with Emulator(script=script_from_trajectory(trajectory, 0, 3) * 2) as emu:
        agent = _agent("openai", emu, "k", trajectory, airline_tools, [PromptCacheMiddleware(cache)])
        for tenant in ("acme", "globex"):
            agent.invoke(
                {"messages": [HumanMessage(trajectory[1]["content"])]}, {"metadata": {"tenant_id": tenant}}
            )
        ka, kb = (r["prompt_cache_key"] for r in emu.requests)
        assert ka != kb


async def test_fallback_model_gets_its_own_providers_hints(
    trajectory: list[dict[str, Any]], airline_tools: Any
) -> None:
    """Primary Anthropic model down; ModelFallbackMiddleware switches to OpenAI. Our middleware
    rewrites the fallback's request: OpenAI hints only, no cache_control."""
    cache = PromptCache()
    with Emulator(script=script_from_trajectory(trajectory, 0, 3)) as emu:
        dead = make_model("anthropic", "http://127.0.0.1:9", "k")  # nothing listens on the discard port
        fallback = make_model("openai", emu.openai_base_url, "k")
        agent = create_agent(
            dead,
            tools=recorded_tools(airline_tools, trajectory),
            system_prompt=trajectory[0]["content"],
            middleware=[ModelFallbackMiddleware(fallback), PromptCacheMiddleware(cache)],
        )
        out = agent.invoke(
            {"messages": [HumanMessage(trajectory[1]["content"])]}, {"configurable": {"tenant_id": "acme"}}
        )
        (sent,) = emu.requests
        assert sent["prompt_cache_key"].startswith("pc-") and not has_cache_control(sent)
        assert out["cache_metrics"].calls == 1


def test_the_model_is_called_with_the_request_override_makes(tmp_path: Any) -> None:
    # The handler gets the caller's request with the hooked model, field for field (a ModelRequest
    # that keeps a model swapped in later on the seam), and the caller's request and model are left
    # as they were.
    from langchain.agents.middleware import ModelResponse
    from langchain_core.messages import AIMessage, SystemMessage
    from langgraph.runtime import Runtime
    from promptcache_langchain._hook import hooked_copy

    model = make_model("openai", "http://127.0.0.1:9/v1", "k")
    request: ModelRequest[Any] = ModelRequest(
        model=model,
        messages=[HumanMessage("hi")],
        system_message=SystemMessage("policy"),
        tools=[],
        state={"messages": []},
        runtime=Runtime(context={"tenant_id": "acme"}),
        model_settings={"temperature": 0},
    )
    before = vars(request).copy()
    seen: list[ModelRequest[Any]] = []

    def handler(sent: ModelRequest[Any]) -> ModelResponse[Any]:
        seen.append(sent)
        return ModelResponse(result=[AIMessage("ok")])

    cache = PromptCache(store=str(tmp_path))
    try:
        PromptCacheMiddleware(cache).wrap_model_call(request, handler)
    finally:
        cache.close()
    (sent,) = seen
    assert sent.model is hooked_copy(model) and sent.model is not model
    assert isinstance(sent, ModelRequest) and vars(sent) == vars(request.override(model=sent.model))
    assert vars(request) == before and request.model is model
