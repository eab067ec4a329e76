"""``promptcache bench agents``: cached share and input cost of real agents' traffic, per arm.

Every trace of the agents corpus (:mod:`promptcache.lab.corpus`) is simulated with the
provider cache simulator (:class:`promptcache.lab.simulate.Simulator`, one cache state per
tenant) and priced with the catalog (:func:`promptcache.pricing.cost`), for three providers:

* ``openai`` — automatic prefix caching (gpt-4o): exact prefix, 1,024-token minimum,
  128-token increments, routing by ``prompt_cache_key``;
* ``openai_explicit`` — GPT-5.6 breakpoint caching (``gpt-5.6-sol``), priced from the packaged
  catalog: cache writes at 1.25x and reads at 0.1x the input rate (the prompt-caching guide);
* ``anthropic`` — ``cache_control`` breakpoints (claude-sonnet-4-5) with the 20-block lookback.

Arms:

* ``as_sent`` — the agent's request without any cache marker (on Anthropic that caches
  nothing; on OpenAI it is what the agent gets today);
* ``own_markers`` — Anthropic only, for agents that place markers: the request with the
  agent's own ``cache_control`` markers where the agent puts them (litellm carries them from
  the content parts to the Anthropic blocks);
* ``langchain_middleware`` — Anthropic only: the request through langchain-anthropic's
  ``AnthropicPromptCachingMiddleware``, run for real
  (:func:`promptcache.lab.bench.langchain_middleware_body`);
* ``promptcache`` — each request through ``PromptCache().prepare_request(body, format=...,
  tenant=...)``, one ``PromptCache`` per trace as in a running app; it gets the agent's own
  markers where the agent sends them to that provider;
* ``oracle`` — content already sent by the tenant within the TTL, wherever it stood
  (:func:`promptcache.lab.bench.oracle_usage`): an upper bound no provider reaches.

``cached_fraction`` is cache-read tokens over input tokens; ``cost_ratio`` is the arm's input
cost over the cost of the same tokens uncached (below 1 saves, above 1 pays more than no cache).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.bench import ArmResult, langchain_middleware_body, oracle_usage, ratio_to_oracle
from promptcache.lab.convert import convert
from promptcache.lab.corpus import START, TRACES, AgentTrace, build_corpus, strip_markers
from promptcache.lab.simulate import Simulator
from promptcache.pricing import cost
from promptcache.usage import CacheUsage

__all__ = [
    "ARMS",
    "MODELS",
    "PROVIDERS",
    "AgentsReport",
    "ArmFigures",
    "ProviderResult",
    "TraceResult",
    "anthropic_with_markers",
    "applies",
    "register_agents",
    "render_table",
    "run_agents",
    "run_trace",
]

Json = dict[str, Any]
PROVIDERS = ("openai", "openai_explicit", "anthropic")
ARMS = ("as_sent", "own_markers", "langchain_middleware", "promptcache", "oracle")
MODELS = {"openai": "gpt-4o", "openai_explicit": "gpt-5.6-sol", "anthropic": "claude-sonnet-4-5"}
_FORMAT = {
    "openai": WireFormat.OPENAI_CHAT,
    "openai_explicit": WireFormat.OPENAI_CHAT,
    "anthropic": WireFormat.ANTHROPIC_MESSAGES,
}
_SIM_PROVIDER = {"openai": "openai", "openai_explicit": "openai", "anthropic": "anthropic"}
# Private-use characters: never in the fixtures, so a marker position survives conversion.
_SENTINEL = "\ue000pcm\ue000"


class ArmFigures(ArmResult):
    """Totals of one arm over one trace on one provider, with its cost against no cache."""

    uncached_cost_usd: float
    cost_ratio: float


class ProviderResult(BaseModel):
    """One trace on one provider: the arms that apply."""

    provider: str
    model: str
    arms: dict[str, ArmFigures]

    def ratio_to_oracle(self, arm: str) -> float:
        """The arm's cached fraction over the oracle's (1.0 when the oracle caches nothing)."""
        return ratio_to_oracle(self.arms, arm)


class TraceResult(BaseModel):
    """One corpus trace: what changes in it and its figures per provider."""

    name: str
    agent: str
    calls: int
    dynamic: list[str]
    own_markers: str | None
    providers: dict[str, ProviderResult]


class AgentsReport(BaseModel):
    """``bench agents`` output."""

    traces: list[TraceResult]

    def losses(self) -> list[str]:
        """Where promptcache is below a baseline (as sent, own markers, LangChain) in share or cost.

        A lower share counts when promptcache also leaves more input tokens uncached: the arms'
        renderings can differ by a few tokens over the same content (LangChain sends the system
        prompt as a list of blocks), and a longer rendering, cached, is not better caching.
        """
        out = []
        for t in self.traces:
            for p in t.providers.values():
                pc = p.arms["promptcache"]
                for arm in ("as_sent", "own_markers", "langchain_middleware"):
                    b = p.arms.get(arm)
                    if b is None:
                        continue
                    uncached = pc.input_tokens - pc.cached_read_tokens
                    if (
                        pc.cached_fraction < b.cached_fraction
                        and uncached > b.input_tokens - b.cached_read_tokens
                    ):
                        out.append(
                            f"{t.name}/{p.provider}: share {pc.cached_fraction:.1%}"
                            f" < {arm} {b.cached_fraction:.1%}"
                        )
                    if pc.cost_usd > b.cost_usd * 1.0005:  # below rounding: equal
                        out.append(f"{t.name}/{p.provider}: cost {pc.cost_usd:.4f} > {arm} {b.cost_usd:.4f}")
        return out


# --------------------------------------------------------------------------------------------
# The agent's own markers, carried to the Anthropic body
# --------------------------------------------------------------------------------------------


def _tag(body: Json) -> Json:
    """Mark each ``cache_control`` position with the sentinel in its text, then drop the markers."""

    def tag_part(part: Any) -> Any:
        if isinstance(part, dict) and part.get("cache_control") and isinstance(part.get("text"), str):
            return {**part, "text": part["text"] + _SENTINEL}
        return part

    out = json.loads(json.dumps(body))
    for m in out.get("messages") or []:
        if isinstance(m.get("content"), list):
            m["content"] = [tag_part(p) for p in m["content"]]
    for t in out.get("tools") or []:
        if t.get("cache_control"):
            t["function"]["description"] = t["function"].get("description", "") + _SENTINEL
    return strip_markers(out)


def _split(blocks: list[Json]) -> list[Json]:
    """Blocks with the sentinel removed; the block (or text span) it closed gets a marker."""
    out: list[Json] = []
    for b in blocks:
        if b.get("type") == "text" and _SENTINEL in b.get("text", ""):
            pieces = b["text"].split(_SENTINEL)
            for i, piece in enumerate(pieces):
                if i < len(pieces) - 1:
                    out.append({**b, "text": piece, "cache_control": {"type": "ephemeral"}})
                elif piece:
                    out.append({k: v for k, v in b.items() if k != "cache_control"} | {"text": piece})
        elif b.get("type") == "tool_result" and _SENTINEL in json.dumps(b.get("content"), ensure_ascii=False):
            content = b["content"]
            if isinstance(content, str):
                content = content.replace(_SENTINEL, "")
            else:
                content = [
                    {**c, "text": c["text"].replace(_SENTINEL, "")} if "text" in c else c for c in content
                ]
            out.append({**b, "content": content, "cache_control": {"type": "ephemeral"}})
        else:
            out.append(b)
    return out


def anthropic_with_markers(body: Json, model: str) -> Json:
    """The Anthropic body for a Chat Completions ``body``, keeping its ``cache_control`` markers.

    litellm carries a marker on a content part to the Anthropic block made from it (a system
    part to a system block, a tool message to its ``tool_result``, a tool to the tool); the
    lab's converter drops markers, so each position rides through it as a sentinel.
    """
    out = convert(_tag(body), WireFormat.OPENAI_CHAT, WireFormat.ANTHROPIC_MESSAGES, model=model)
    system = out.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    if system:
        out["system"] = _split(system)
    for m in out.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        m["content"] = _split(content)
    for t in out.get("tools") or []:
        if _SENTINEL in t.get("description", ""):
            t["description"] = t["description"].replace(_SENTINEL, "")
            t["cache_control"] = {"type": "ephemeral"}
    return out


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _figures(usages: Sequence[CacheUsage]) -> ArmFigures:
    inp = sum(u.input_tokens for u in usages)
    read = sum(u.cache_read_tokens for u in usages)
    priced = [cost(u) for u in usages]
    total = sum(float(c.total) for c in priced)
    uncached = sum(float(c.cost_without_cache) for c in priced)
    return ArmFigures(
        requests=len(usages),
        input_tokens=inp,
        cached_read_tokens=read,
        cache_write_tokens=sum(u.cache_write_tokens for u in usages),
        cached_fraction=round(read / inp, 4) if inp else 0.0,
        cost_usd=round(total, 6),
        uncached_cost_usd=round(uncached, 6),
        cost_ratio=round(total / uncached, 4) if uncached else 1.0,
    )


def _clock_of(at: list[float]) -> Callable[[], float]:
    """A clock reading ``at[0]``: the time of the request being simulated."""
    return lambda: at[0]


def applies(trace: AgentTrace, provider: str, arm: str) -> bool:
    """Whether ``arm`` exists for ``trace`` on ``provider``.

    The agents' markers and LangChain's middleware are Anthropic-only; "own markers" needs an
    agent that places some.
    """
    if arm == "langchain_middleware":
        return provider == "anthropic"
    if arm == "own_markers":
        return provider == "anthropic" and trace.own_markers is not None
    return arm in ARMS


def _bodies(trace: AgentTrace, provider: str, arm: str) -> list[Json]:
    """The bodies an arm sends (the oracle sees what was sent)."""
    model = MODELS[provider]
    plain = [strip_markers(c.body) | {"model": model} for c in trace.calls]
    if provider != "anthropic":
        return plain
    # promptcache gets the agent's own markers where the agent sends them: they are the caller's.
    if arm == "own_markers" or (arm == "promptcache" and trace.own_markers):
        return [anthropic_with_markers(c.body | {"model": model}, model) for c in trace.calls]
    if arm == "langchain_middleware":
        return [langchain_middleware_body(b, WireFormat.OPENAI_CHAT, model) for b in plain]
    return [convert(b, WireFormat.OPENAI_CHAT, WireFormat.ANTHROPIC_MESSAGES, model=model) for b in plain]


def run_trace(
    trace: AgentTrace,
    provider: str,
    *,
    arms: Sequence[str] = ARMS,
    progress: Callable[[], None] | None = None,
) -> ProviderResult:
    """Simulate one corpus trace on one provider for each arm that applies."""
    fmt, model = _FORMAT[provider], MODELS[provider]
    results: dict[str, ArmFigures] = {}
    for arm in arms:
        if not applies(trace, provider, arm):
            continue
        bodies = _bodies(trace, provider, "as_sent" if arm == "oracle" else arm)
        calls = list(zip(trace.calls, bodies, strict=True))
        if arm == "oracle":
            usages = oracle_usage([(c.ts, c.tenant, fmt, b) for c, b in calls], model)
        else:
            sim = Simulator(provider=_SIM_PROVIDER[provider])
            sent_at = [START.timestamp()]
            # The trace's own clock: a value giving "now" is judged at the request's time.
            pc = PromptCache(clock=_clock_of(sent_at))
            usages = []
            for c, b in calls:
                sent_at[0] = START.timestamp() + c.ts
                out = b
                if arm == "promptcache":
                    out = pc.prepare_request(b, format=fmt, model=model, tenant=c.tenant).body
                usages.append(sim.feed(c.ts, fmt, out, org=c.tenant, model=model).usage)
                if progress is not None:
                    progress()
        results[arm] = _figures(usages)
    return ProviderResult(provider=provider, model=model, arms=results)


def run_agents(
    traces: Sequence[str] | None = None,
    providers: Sequence[str] = PROVIDERS,
    *,
    progress: Callable[[], None] | None = None,
) -> AgentsReport:
    """The benchmark over the corpus traces named (all by default) and the providers given."""
    bad = [p for p in providers if p not in PROVIDERS]
    if bad:
        raise ValueError(f"provider(s) {', '.join(bad)}: use {', '.join(PROVIDERS)}")
    out = []
    for t in build_corpus(traces):
        res = {p: run_trace(t, p, progress=progress) for p in providers}
        out.append(
            TraceResult(
                name=t.name,
                agent=t.agent,
                calls=len(t.calls),
                dynamic=t.dynamic,
                own_markers=t.own_markers,
                providers=res,
            )
        )
    return AgentsReport(traces=out)


def render_table(report: AgentsReport) -> str:
    """Markdown table: per trace and provider, each arm's cached share and input cost ratio."""
    head = ["trace", "provider", "as sent", "own markers", "LangChain mw", "promptcache", "oracle"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in report.traces:
        for p in t.providers.values():
            cells = [t.name, p.provider]
            for arm in ARMS:
                a = p.arms.get(arm)
                cells.append("—" if a is None else f"{a.cached_fraction:.1%} · {a.cost_ratio:.2f}×")
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def register_agents(bsub: Any) -> None:
    """Add ``promptcache bench agents`` under ``promptcache bench``."""
    a = bsub.add_parser(
        "agents", help="cached share and input cost of real agents' request builders, per arm"
    )
    a.add_argument(
        "--trace", action="append", choices=TRACES, help="only this trace (repeatable; default: all)"
    )
    a.add_argument("--provider", action="append", choices=PROVIDERS, help="only this provider (repeatable)")
    a.add_argument("--out", help="also write the JSON report to this file")
    a.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    a.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    a.set_defaults(func=_cli_agents)


def _cli_agents(args: argparse.Namespace) -> int:
    from promptcache._cliutil import progress

    traces = args.trace or list(TRACES)
    providers = args.provider or list(PROVIDERS)
    corpus = build_corpus(traces)
    simulated = [a for a in ARMS if a != "oracle"]
    total = sum(len(t.calls) for t in corpus for p in providers for a in simulated if applies(t, p, a))
    done = 0
    with progress("simulating", total, enabled=not args.no_progress) as update:

        def step() -> None:
            nonlocal done
            done += 1
            update(done)

        report = run_agents(traces, providers, progress=step)
    data = report.model_dump(mode="json")
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("cached share · input cost over uncached (lower is cheaper)")
        print(render_table(report))
        losses = report.losses()
        if losses:
            print("\npromptcache below a baseline:")
            print("\n".join(f"  {x}" for x in losses))
    return 0
