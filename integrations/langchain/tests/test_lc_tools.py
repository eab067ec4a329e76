"""Tool-output caching in a real ``create_agent`` run over the tau-bench airline tools.

The emulator plays the model: it reads a reservation twice, updates its baggage (a write that
invalidates ``reservation:{reservation_id}``), reads it again, and sends two certificates (an
undeclared, side-effecting tool). The same script runs through an agent whose middleware caches
no tool: its requests are the reference, and the cached agent must send byte-identical ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airline_tools_lc import AIRLINE_SPECS, RES, SCRIPT, Backend, call
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from promptcache_langchain import PromptCacheMiddleware, cache_tool, cached_tool, declare_tool, spec_of

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec
from promptcache.metrics import CacheMetrics

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

ACME = {"configurable": {"tenant_id": "acme"}}


def _pc(tmp_path: Path, policy: dict[str, Any] | None = None) -> PromptCache:
    # A real L1 + SQLite store of this test's own: never the user's default cache directory.
    return PromptCache(policy, store=tmp_path / "pc")


def _agent(emu: Any, backend: Backend, cache: PromptCache, specs: dict[str, ToolSpec] | None) -> Any:
    model = make_model("openai", emu.openai_base_url, "k")
    mw = PromptCacheMiddleware(cache, tool_specs=specs)
    return create_agent(
        model, tools=backend.tools(), system_prompt="You are an airline agent.", middleware=[mw]
    )


async def _invoke(agent: Any, text: str, config: dict[str, Any], use_async: bool) -> Any:
    state = {"messages": [HumanMessage(text)]}
    return await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)


def _tool_messages(state: Any) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_agent_serves_reads_invalidates_on_write_runs_side_effects(
    tmp_path: Path, use_async: bool
) -> None:
    ref_backend, backend = Backend(), Backend()
    with Emulator(script=SCRIPT) as ref_emu, Emulator(script=SCRIPT) as emu:
        ref = await _invoke(
            _agent(ref_emu, ref_backend, _pc(tmp_path / "ref"), {}), "Add a bag.", ACME, use_async
        )
        cache = _pc(tmp_path)
        final = await _invoke(_agent(emu, backend, cache, AIRLINE_SPECS), "Add a bag.", ACME, use_async)

        # Three reads by the model; the second was served: the backing function ran twice.
        assert ref_backend.calls["get_reservation_details"] == 3
        assert backend.calls["get_reservation_details"] == 2
        # The write and both side-effecting calls always ran.
        assert backend.calls["update_reservation_baggages"] == 1
        assert backend.calls["send_certificate"] == 2

        msgs = _tool_messages(final)
        first, served, _write, fresh, cert1, cert2 = msgs
        assert served.content == first.content  # the cached read
        assert json.loads(fresh.content)["total_baggages"] == 2  # fresh after the write
        assert cert1.content != cert2.content  # a side-effecting tool is never served
        # Byte-identical to an uncached run: every message content and every request body.
        assert [m.content for m in msgs] == [m.content for m in _tool_messages(ref)]
        assert emu.requests == ref_emu.requests
        # Untrusted label on the cacheable tools' messages, with how each was answered.
        assert served.response_metadata["promptcache"]["trust"] == "untrusted"
        assert served.response_metadata["promptcache"]["hit"] is True
        assert first.response_metadata["promptcache"]["hit"] is False
        # the reason as its plain enum value (JSON in any checkpoint), and the same in words
        assert served.response_metadata["promptcache"]["reason"] == "hit"
        assert type(first.response_metadata["promptcache"]["reason"]) is str
        assert first.response_metadata["promptcache"]["reason"] == "stored"
        assert first.response_metadata["promptcache"]["why"].startswith("miss: stored for")
        assert "promptcache" not in cert1.response_metadata

        m: CacheMetrics = final["cache_metrics"]
        tools = [r for r in m.records.values() if r.kind == "tool"]
        assert m.local_hits == 1 and m.tool_calls == len(tools) == 4  # 3 reads + 1 write (declared)
        assert m.calls == len(SCRIPT) == len(emu.requests)  # model calls still counted
        assert {r.tenant for r in tools} == {"acme"}
        stats = cache.tools.stats()
        assert (stats.hits, stats.invalidations) == (1, 1)


async def test_two_tenants_never_share_a_tool_entry(tmp_path: Path) -> None:
    backend, cache = Backend(), _pc(tmp_path)
    script = [call("get_reservation_details", reservation_id=RES), {"text": "ok"}] * 3
    with Emulator(script=script) as emu:
        agent = _agent(emu, backend, cache, AIRLINE_SPECS)
        outs = [
            agent.invoke({"messages": [HumanMessage("res?")]}, {"configurable": {"tenant_id": t}})
            for t in ("acme", "globex", "acme")
        ]
    # acme ran, globex ran (no sharing across tenants), acme's second call was served.
    assert backend.calls["get_reservation_details"] == 2
    assert [o["cache_metrics"].local_hits for o in outs] == [0, 0, 1]


async def test_cached_tool_declarations_reach_the_middleware(tmp_path: Path) -> None:
    """Tools declared with @cached_tool need no tool_specs: the middleware reads their metadata."""
    backend, cache = Backend(), _pc(tmp_path)
    tools = {t.name: t for t in backend.tools()}
    declared = [
        cached_tool(
            tools["get_reservation_details"], side_effect="read_only", tags=["reservation:{reservation_id}"]
        ),
        cached_tool(
            tools["update_reservation_baggages"],
            side_effect="idempotent_write",
            invalidates=["reservation:{reservation_id}"],
        ),
        tools["send_certificate"],
    ]
    assert spec_of(declared[0]) == AIRLINE_SPECS["get_reservation_details"]
    assert spec_of(tools["send_certificate"]) is None  # undeclared: side_effecting
    with Emulator(script=SCRIPT) as emu:
        agent = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            tools=declared,
            middleware=[PromptCacheMiddleware(cache)],
        )
        final = agent.invoke({"messages": [HumanMessage("Add a bag.")]}, ACME)
    assert backend.calls["get_reservation_details"] == 2 and backend.calls["send_certificate"] == 2
    assert final["cache_metrics"].local_hits == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_cache_tool_wraps_a_base_tool_and_reports_to_the_middleware(
    tmp_path: Path, use_async: bool
) -> None:
    """cache_tool(...) caches by itself; inside the agent the middleware only records its outcome."""
    backend, cache = Backend(), _pc(tmp_path)
    tools = {t.name: t for t in backend.tools()}
    wrapped = [
        cache_tool(tools["get_reservation_details"], cache, spec=AIRLINE_SPECS["get_reservation_details"]),
        cache_tool(
            tools["update_reservation_baggages"], cache, spec=AIRLINE_SPECS["update_reservation_baggages"]
        ),
        cache_tool(tools["send_certificate"], cache),  # undeclared: runs every time
    ]
    with Emulator(script=SCRIPT) as emu:
        agent = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            tools=wrapped,
            middleware=[PromptCacheMiddleware(cache)],
        )
        final = await _invoke(agent, "Add a bag.", ACME, use_async)
    assert backend.calls["get_reservation_details"] == 2
    assert backend.calls["send_certificate"] == 2
    msgs = _tool_messages(final)
    assert json.loads(msgs[3].content)["total_baggages"] == 2 and msgs[1].content == msgs[0].content
    assert final["cache_metrics"].local_hits == 1 and final["cache_metrics"].tool_calls == 4


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_cache_tool_directly_per_tenant_and_byte_identical(tmp_path: Path, use_async: bool) -> None:
    backend, cache = Backend(), _pc(tmp_path)
    plain = {t.name: t for t in backend.tools()}["get_reservation_details"]
    tool = cache_tool(plain, cache, side_effect="read_only", tags=["reservation:{reservation_id}"])
    tc = {"type": "tool_call", "name": tool.name, "args": {"reservation_id": RES}, "id": "c1"}

    async def run(config: dict[str, Any]) -> Any:
        return await tool.ainvoke(tc, config) if use_async else tool.invoke(tc, config)

    uncached = plain.invoke(tc)
    a1, a2 = await run(ACME), await run(ACME)
    g1 = await run({"metadata": {"tenant_id": "globex"}})
    assert backend.calls["get_reservation_details"] == 3  # uncached + acme once + globex once
    assert a1.content == a2.content == g1.content == uncached.content
    assert type(a2.content) is type(uncached.content)
    assert a2.status == "success" and a2.tool_call_id == "c1"
    cache.invalidate(f"reservation:{RES}")
    await run(ACME)
    assert backend.calls["get_reservation_details"] == 4


async def test_cache_tool_requires_a_tenant_when_the_policy_does(tmp_path: Path) -> None:
    backend = Backend()
    cache = _pc(tmp_path, {"require_tenant": True})
    plain = {t.name: t for t in backend.tools()}["get_reservation_details"]
    tool = cache_tool(plain, cache, spec=AIRLINE_SPECS["get_reservation_details"])
    with pytest.raises(ValueError, match="requires a tenant"):
        tool.invoke({"reservation_id": RES})
    assert backend.calls["get_reservation_details"] == 0


def test_cached_tool_decorates_a_function_and_reads_mcp_annotations(tmp_path: Path) -> None:
    cache = _pc(tmp_path)
    runs: list[str] = []

    @cached_tool(side_effect="pure", cache=cache)
    def fare(route: str) -> dict[str, Any]:
        """Fare of a route."""
        runs.append(route)
        return {"usd": 210, "route": route, "legs": [1, 2]}

    tc = {"type": "tool_call", "name": "fare", "args": {"route": "SFO-JFK"}, "id": "x"}
    first, second = fare.invoke(tc, ACME), fare.invoke(tc, ACME)
    assert runs == ["SFO-JFK"] and first.content == second.content  # dict output: same JSON text

    # langchain-mcp-adapters puts the MCP ToolAnnotations in tool.metadata (unset hints as None).
    mcp_like = {t.name: t for t in Backend().tools()}["get_user_details"].model_copy(
        update={
            "metadata": {"title": None, "readOnlyHint": True, "destructiveHint": None, "openWorldHint": None}
        }
    )
    spec = spec_of(mcp_like)
    assert spec is not None and spec.cacheable and spec.effective_side_effect == "read_only"
    destructive = mcp_like.model_copy(update={"metadata": {"readOnlyHint": False, "destructiveHint": True}})
    spec2 = spec_of(destructive)
    assert spec2 is not None and not spec2.cacheable


def _declare_send_certificate(way: str, backend: Backend, cache: PromptCache) -> tuple[list[Any], Any]:
    """The airline tools with ``send_certificate`` declared side-effecting in one of the three ways."""
    tools = backend.tools()
    specs: dict[str, ToolSpec] = dict(AIRLINE_SPECS)
    if way == "tool_specs":
        specs["send_certificate"] = ToolSpec(name="send_certificate", side_effect="side_effecting")
    else:
        i = next(i for i, t in enumerate(tools) if t.name == "send_certificate")
        if way == "declare_tool":
            tools[i] = declare_tool(tools[i], side_effect="side_effecting")
        elif way == "cache_tool":
            tools[i] = cache_tool(tools[i], cache, side_effect="side_effecting")
        else:  # MCP annotations, as langchain-mcp-adapters copies them into the metadata
            tools[i] = tools[i].model_copy(
                update={"metadata": {"destructiveHint": True, "readOnlyHint": False}}
            )
    return tools, specs


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("way", ["tool_specs", "declare_tool", "cache_tool", "mcp"])
async def test_declared_side_effecting_calls_are_recorded_never_served(
    tmp_path: Path, way: str, use_async: bool
) -> None:
    # Issue 20, item 9: tool_calls counted every declared call but the side-effecting ones.
    backend, cache = Backend(), _pc(tmp_path)
    tools, specs = _declare_send_certificate(way, backend, cache)
    with Emulator(script=SCRIPT) as emu:
        agent = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            tools=tools,
            system_prompt="You are an airline agent.",
            middleware=[PromptCacheMiddleware(cache, tool_specs=specs)],
        )
        final = await _invoke(agent, "Add a bag.", ACME, use_async)
    # Both identical certificate calls ran: a side-effecting tool is never served.
    assert backend.calls["send_certificate"] == 2
    cert1, cert2 = _tool_messages(final)[4:]
    assert cert1.content != cert2.content
    m: CacheMetrics = final["cache_metrics"]
    tools_run = [r for r in m.records.values() if r.kind == "tool"]
    # 3 reads (1 served) + 1 write + 2 side-effecting calls, each recorded once.
    assert m.tool_calls == len(tools_run) == 6 and m.local_hits == 1
    assert sum(1 for r in tools_run if not r.local_hit) == 5
    assert m.calls == len(SCRIPT) == len(emu.requests)
