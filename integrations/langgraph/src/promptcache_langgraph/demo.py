"""The main job (``make demo`` / ``promptcache demo``): a real LangChain agent, without and with promptcache.

A ``create_agent`` customer-support agent built from the real tau-bench airline policy and its 14
tool schemas replays a real recorded conversation (GPT-4o, task 2: a customer downgrading three
business-class reservations): the provider emulator (:class:`promptcache.lab.emulate.Emulator`, started
in-process on 127.0.0.1) answers with the recorded assistant turns, tool calls included, and the
tools answer with the recorded tool outputs. Real ``ChatOpenAI`` and ``ChatAnthropic`` clients talk
HTTP to it; it reports prompt-cache usage by each provider's documented rules (the offline
simulator). No network, no Redis, no API key.

The agent has the two cache killers real apps have: a clock line in the system prompt stamped per
call by LangChain's ``dynamic_prompt`` middleware, and its tool list in a different order on every
call (a middleware shuffling ``request.tools``, as tool registries built from sets or dicts do).
Each provider runs twice on a fresh emulator: first the agent as written, then the same agent with
``PromptCacheMiddleware`` last in its middleware list. Everything else is identical.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, ModelResponse, dynamic_prompt, wrap_model_call
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import StructuredTool
from promptcache_langchain import PromptCacheMiddleware

from promptcache import PromptCache
from promptcache.lab.bundled import AGENTS
from promptcache.lab.emulate import Emulator
from promptcache.lab.traces import script_from_trajectory
from promptcache.pricing import cost
from promptcache.usage import CacheUsage

__all__ = ["fixtures_dir", "render", "run_agent_demo"]

TENANT = "demo-airline"
TASK_ID = 2
USER_TURNS = 4
"""User turns replayed (of the recorded 5; the last one only says goodbye): 11 model calls."""

_CLOCK_LINE = "The current time is 2024-05-15 15:00:00 EST."
_MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}
_FILES = ("tau_bench_airline_system_prompt.md", "tau_bench_airline_tools.json")


def fixtures_dir() -> Path:
    """Where the real tau-bench material is read from: the fixtures bundled with promptcache."""
    return AGENTS


def _load() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    d = fixtures_dir()
    policy = (d / _FILES[0]).read_text()
    tools = json.loads((d / _FILES[1]).read_text())
    runs = json.loads((d / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text())
    traj = next(r for r in runs if r["task_id"] == TASK_ID)["traj"]
    return policy, tools, traj


def _turns(traj: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The first USER_TURNS user messages, and the recorded messages up to the next user turn."""
    users = [i for i, m in enumerate(traj) if m["role"] == "user"]
    stop = users[USER_TURNS] if len(users) > USER_TURNS else len(traj)
    return [traj[i]["content"] for i in users[:USER_TURNS]], traj[:stop]


def _recorded_tools(schemas: list[dict[str, Any]], traj: list[dict[str, Any]]) -> list[StructuredTool]:
    """The real airline tool schemas, each answering with its recorded outputs, in order."""
    outputs: dict[str, list[str]] = {}
    for m in traj:
        if m["role"] == "tool":
            outputs.setdefault(m["name"], []).append(m["content"])
    tools = []
    for schema in schemas:
        fn = schema["function"]
        queue = list(outputs.get(fn["name"], []))

        def run(_queue: list[str] = queue, _name: str = fn["name"], **_: Any) -> str:
            return _queue.pop(0) if _queue else json.dumps({"error": f"no recorded output for {_name}"})

        tools.append(
            StructuredTool.from_function(
                func=run, name=fn["name"], description=fn["description"], args_schema=fn["parameters"]
            )
        )
    return tools


def _cache_killers(policy: str, seed: int) -> list[Any]:
    """The two middlewares that make a real agent's prompt differ on every call."""
    start = datetime(2024, 5, 15, 15, 0, 0)
    n = iter(range(10_000))

    @dynamic_prompt
    def clock(request: ModelRequest[Any]) -> str:
        # The clock a real app reads from datetime.now(), made deterministic: 37 s per call.
        now = start + timedelta(seconds=37 * next(n))
        return policy.replace(_CLOCK_LINE, f"The current time is {now:%Y-%m-%d %H:%M:%S} EST.")

    rng = random.Random(seed)

    @wrap_model_call
    def shuffle_tools(
        request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        tools = list(request.tools)
        rng.shuffle(tools)
        return handler(request.override(tools=tools))

    return [clock, shuffle_tools]


def _model(provider: str, emu: Emulator) -> BaseChatModel:
    if provider == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=_MODELS[provider], api_key="demo", base_url=emu.openai_base_url, max_retries=0
        )
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(
        model=_MODELS[provider],
        api_key="demo",
        base_url=emu.anthropic_base_url,
        max_retries=0,
        max_tokens=1024,
    )


def _run_arm(provider: str, with_promptcache: bool, material: Any) -> dict[str, Any]:
    policy, schemas, traj = material
    users, played = _turns(traj)
    cache = PromptCache()
    middleware = _cache_killers(policy, seed=7)
    if with_promptcache:
        middleware.append(PromptCacheMiddleware(cache))  # its place in the list does not matter
    with Emulator(port=0, script=script_from_trajectory(played)) as emu:
        tools = _recorded_tools(schemas, played)
        # Any: the compiled graph's invoke overloads are typed for the v2 stream API.
        agent: Any = create_agent(_model(provider, emu), tools=tools, middleware=middleware)
        config: Any = {"configurable": {"tenant_id": TENANT}}
        messages: list[BaseMessage] = []
        state: dict[str, Any] = {}
        for text in users:
            messages = [*messages, HumanMessage(text)]
            state = agent.invoke({**state, "messages": messages}, config)
            messages = list(state["messages"])
        usages = [u for u in emu.usages if u is not None]
    answers = [m for m in state["messages"] if isinstance(m, AIMessage)]
    metas = [m.response_metadata.get("promptcache", {}) for m in answers]
    arm: dict[str, Any] = {
        "calls": [_call(u, meta) for u, meta in zip(usages, metas or [{}] * len(usages), strict=False)],
        "totals": _totals(usages),
        "last_answer_is_recorded": answers[-1].content == played[-1]["content"],
    }
    if with_promptcache:
        metrics = state.get("cache_metrics")
        arm['state["cache_metrics"]'] = metrics.summary() if metrics is not None else None
        row = cache.stats().for_tenant(TENANT)
        arm["cache.stats()"] = {
            "tenant": TENANT,
            "calls": row.calls,
            "input_tokens": row.input_tokens,
            "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "cost_usd": round(row.cost_usd, 6),
            "cost_avoided_usd": round(row.cost_avoided_usd, 6),
        }
        arm['response_metadata["promptcache"]'] = _without_explain(metas[-1]) if metas else None
    return arm


def _without_explain(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "explain"}


def _call(u: CacheUsage, meta: dict[str, Any]) -> dict[str, Any]:
    c = cost(u)
    out: dict[str, Any] = {
        "input_tokens": u.input_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cached_share": round(u.cached_fraction, 3),
        "cost_usd": round(c.total, 6),
    }
    if "explain" in meta:
        out["explain"] = meta["explain"]
    return out


def _totals(usages: list[CacheUsage]) -> dict[str, Any]:
    inp = sum(u.input_tokens for u in usages)
    read = sum(u.cache_read_tokens for u in usages)
    return {
        "calls": len(usages),
        "input_tokens": inp,
        "cache_read_tokens": read,
        "cache_write_tokens": sum(u.cache_write_tokens for u in usages),
        "output_tokens": sum(u.output_tokens for u in usages),
        "cached_share": round(read / inp, 3) if inp else 0.0,
        "cost_usd": round(sum(cost(u).total for u in usages), 6),
    }


def run_agent_demo(providers: tuple[str, ...] = ("openai", "anthropic")) -> dict[str, Any]:
    """Run the agent without and with promptcache for each provider; the report as plain data."""
    t0 = time.perf_counter()
    material = _load()
    out: dict[str, Any] = {
        "demo": "agent",
        "agent": "langchain create_agent, tau-bench airline policy + 14 tools, recorded task 2 replayed",
        "fixtures": str(fixtures_dir()),
        "tenant": TENANT,
        "providers": {},
    }
    for provider in providers:
        without = _run_arm(provider, False, material)
        with_ = _run_arm(provider, True, material)
        a, b = without["totals"], with_["totals"]
        out["providers"][provider] = {
            "model": _MODELS[provider],
            "without": without,
            "with": with_,
            "tokens_from_cache_gained": b["cache_read_tokens"] - a["cache_read_tokens"],
            "cost_avoided_usd": round(a["cost_usd"] - b["cost_usd"], 6),
            "cost_avoided_share": round(1 - b["cost_usd"] / a["cost_usd"], 3) if a["cost_usd"] else 0.0,
        }
    out["where_the_figures_live"] = {
        'state["cache_metrics"]': "the agent's final state: totals of every model call "
        "(CacheMetrics.summary())",
        'AIMessage.response_metadata["promptcache"]': "per call: prefix key, hints, relocated values, "
        "usage, cost, cost avoided, explain",
        "cache.stats()": "per tenant and model, across every run that used this PromptCache",
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _pct(x: float) -> str:
    return f"{x:.0%}"


def render(report: dict[str, Any]) -> str:
    """The report as plain text a person reads at a glance."""
    lines = [
        "promptcache demo — a real LangChain agent, without and with promptcache",
        "",
        "Agent: create_agent + the real tau-bench airline policy and its 14 tools, replaying a recorded",
        "GPT-4o support conversation (4 customer turns, 11 model calls, recorded tool outputs) against",
        "the provider emulator on 127.0.0.1 — real ChatOpenAI / ChatAnthropic clients, no network.",
        "Cache killers, as in real apps: a clock line in the system prompt (dynamic_prompt middleware)",
        "and the tool list shuffled on every call.",
    ]
    for provider, p in report["providers"].items():
        a, b = p["without"], p["with"]
        lines += [
            "",
            f"== {provider}: {p['model']} " + "=" * max(0, 60 - len(provider) - len(p["model"])),
            f"{'call':>4}  {'prompt tok':>10}  {'cached without':>14}  {'cached with promptcache':>23}",
        ]
        for i, (ca, cb) in enumerate(zip(a["calls"], b["calls"], strict=False), start=1):
            lines.append(
                f"{i:>4}  {cb['input_tokens']:>10}  {_pct(ca['cached_share']):>14}  "
                f"{cb['cache_read_tokens']:>12} tok ({_pct(cb['cached_share'])})"
            )
        ta, tb = a["totals"], b["totals"]
        lines += [
            f"cached share of all prompt tokens: without {_pct(ta['cached_share'])}, "
            f"with promptcache {_pct(tb['cached_share'])}",
            f"tokens read from the provider cache: {ta['cache_read_tokens']} -> {tb['cache_read_tokens']} "
            f"(+{p['tokens_from_cache_gained']}; {tb['cache_write_tokens']} written)",
            f"cost of the conversation: ${ta['cost_usd']:.4f} -> ${tb['cost_usd']:.4f}  "
            f"(avoided ${p['cost_avoided_usd']:.4f}, {_pct(p['cost_avoided_share'])})",
        ]
    first = next(iter(report["providers"].values()))["with"]["calls"]
    lines += ["", "Why calls missed, and what promptcache did (plan.explain(), per call):"]
    for i, c in enumerate(first[:3], start=1):
        text = c.get("explain", "")
        lines.append(f"  call {i}: " + text.splitlines()[0] if text else f"  call {i}: (none)")
        lines += ["    " + x.strip() for x in text.splitlines()[1:6]]
    lines += [
        "  (later calls: the same two killers, absorbed; the conversation only grows at the end)",
        "",
        "Where the figures live in your app:",
    ]
    for where, what in report["where_the_figures_live"].items():
        lines.append(f"  {where:<44} {what}")
    p0 = next(iter(report["providers"].values()))["with"]
    m = p0['state["cache_metrics"]'] or {}
    lines += [
        "",
        f'  e.g. state["cache_metrics"] ({next(iter(report["providers"]))}): calls={m.get("calls")} '
        f"input={m.get('input_tokens')} cache_read={m.get('cache_read_tokens')} "
        f"hit_rate={m.get('hit_rate', 0):.0%} cost_avoided=${m.get('cost_avoided_usd', 0):.4f}",
        f"done in {report['seconds']} s; `promptcache demo --json` prints all of it, "
        "`promptcache demo --core` the offline core simulation.",
    ]
    return "\n".join(lines)
