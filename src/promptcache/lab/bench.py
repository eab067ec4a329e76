"""``promptcache bench hitrate``: how much of a trace a provider would cache, per arm.

Arms, all simulated offline with :class:`promptcache.lab.simulate.Simulator` (one cache
state per tenant, as providers keep caches per organization):

* ``as_sent`` — the requests as the app sent them (converted to the provider's wire
  format first when the trace was logged in another one), with only the provider's
  automatic behaviour;
* ``promptcache`` — each request through :meth:`PromptCache.prepare_request` with
  default settings (one ``PromptCache`` for the whole trace, as in a running app);
* ``langchain_middleware`` — Anthropic only: the request through the real
  ``AnthropicPromptCachingMiddleware`` from langchain-anthropic, called the way a
  LangChain agent calls it (``wrap_model_call`` on a ``ModelRequest``), then rendered to
  the wire by ``ChatAnthropic`` itself, exactly as the agent would send it;
* ``oracle`` — an upper bound: every token whose content (a line of text, a tool schema,
  a tool call, a framing token) was already sent by the same tenant within the
  provider's TTL, wherever it stood. No provider can beat it; it ignores minimum
  lengths, increments and breakpoints.

``cached_fraction`` is ``cached_read_tokens / input_tokens`` of the arm.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.convert import convert, default_model, to_openai_chat
from promptcache.lab.simulate import Rendered, Simulator, render
from promptcache.lab.traces import (
    SCENARIOS,
    Domain,
    TraceLine,
    build_trace,
    read_trace_for,
    write_trace,
)
from promptcache.pricing import cost
from promptcache.usage import CacheUsage

__all__ = [
    "ARMS",
    "PROVIDER_FORMATS",
    "ArmResult",
    "HitrateReport",
    "langchain_middleware_body",
    "oracle_usage",
    "register",
    "run_hitrate",
]

Json = dict[str, Any]
Provider = Literal["openai", "anthropic", "bedrock", "gemini"]
ARMS = ("as_sent", "promptcache", "langchain_middleware", "oracle")
PROVIDER_FORMATS: dict[str, WireFormat] = {
    "openai": WireFormat.OPENAI_CHAT,
    "anthropic": WireFormat.ANTHROPIC_MESSAGES,
    "bedrock": WireFormat.BEDROCK_CONVERSE,
    "gemini": WireFormat.GEMINI,
}
# Simulator defaults: OpenAI's idle expiry, Anthropic/Bedrock's 5-minute TTL, Gemini's
# implicit-cache assumption — all 300 s.
ORACLE_TTL_S = 300.0


class ArmResult(BaseModel):
    """Totals of one arm over a trace."""

    model_config = ConfigDict(frozen=True)

    requests: int
    input_tokens: int
    cached_read_tokens: int
    cache_write_tokens: int
    cached_fraction: float
    cost_usd: float


class HitrateReport(BaseModel):
    """``bench hitrate`` output: the arms under ``arms``."""

    provider: str
    model: str
    format: WireFormat
    requests: int
    arms: dict[str, ArmResult]

    def ratio_to_oracle(self, arm: str) -> float:
        """The arm's cached fraction over the oracle's (1.0 when the oracle caches nothing)."""
        return ratio_to_oracle(self.arms, arm)


def ratio_to_oracle(arms: Mapping[str, ArmResult], arm: str) -> float:
    """``arm``'s cached fraction over the ``oracle`` arm's (1.0 when the oracle caches nothing)."""
    o = arms["oracle"].cached_fraction
    return arms[arm].cached_fraction / o if o else 1.0


def _total(usages: Sequence[CacheUsage], provider: str, model: str) -> ArmResult:
    inp = sum(u.input_tokens for u in usages)
    read = sum(u.cache_read_tokens for u in usages)
    write = sum(u.cache_write_tokens for u in usages)
    price = sum(float(cost(u).total) for u in usages) if usages else 0.0
    return ArmResult(
        requests=len(usages),
        input_tokens=inp,
        cached_read_tokens=read,
        cache_write_tokens=write,
        cached_fraction=round(read / inp, 4) if inp else 0.0,
        cost_usd=round(price, 6),
    )


# --------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------


def _pieces(r: Rendered) -> list[tuple[tuple[str, str], float]]:
    """Content pieces of a rendered prompt with their token share: lines of text, whole others."""
    out: list[tuple[tuple[str, str], float]] = []
    for seg in r.segments:
        if seg.key.startswith("t:") and "\n" in seg.text:
            lines = seg.text.splitlines(keepends=True)
            total = sum(len(x) for x in lines) or 1
            out.extend((("l", x), seg.tokens * len(x) / total) for x in lines)
        else:
            out.append((("s", seg.key), float(seg.tokens)))
    return out


class _Oracle:
    """Content already sent per tenant, with the time it was last sent."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.seen: dict[str, dict[tuple[str, str], float]] = {}

    def feed(self, ts: float, tenant: str, r: Rendered) -> CacheUsage:
        seen = self.seen.setdefault(tenant, {})
        cached = 0.0
        pieces = _pieces(r)
        for key, tokens in pieces:
            last = seen.get(key)
            if last is not None and ts - last <= self.ttl_s:
                cached += tokens
        for key, _ in pieces:
            seen[key] = ts
        return CacheUsage(
            provider=r.provider,
            model=r.model,
            input_tokens=r.total_tokens,
            cache_read_tokens=min(r.total_tokens, round(cached)),
        )


def oracle_usage(
    lines: Sequence[tuple[float, str, WireFormat, Json]], model: str | None = None
) -> list[CacheUsage]:
    """The oracle's usage for ``(ts, tenant, format, body)`` requests, in order."""
    o = _Oracle(ORACLE_TTL_S)
    return [o.feed(ts, tenant, render(fmt, body, model)) for ts, tenant, fmt, body in lines]


# --------------------------------------------------------------------------------------------
# LangChain's AnthropicPromptCachingMiddleware, run for real
# --------------------------------------------------------------------------------------------


def _langchain_tool_choice(choice: Any) -> Any:
    """An OpenAI ``tool_choice`` as LangChain's ``bind_tools`` takes it (None: not set), so the
    middleware arm asks for the same tool use as the app's request."""
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    return {"required": "any"}.get(choice, choice) if isinstance(choice, str) else None


def langchain_middleware_body(body: Json, src: WireFormat, model: str) -> Json:
    """The Anthropic body a LangChain agent with ``AnthropicPromptCachingMiddleware`` would send.

    The request is rebuilt as LangChain objects (messages from the app's history, tools
    as ``StructuredTool``), passed through the middleware's ``wrap_model_call`` as the
    agent loop does, bound like the agent factory binds it (``bind_tools`` with the
    request's ``model_settings``) and rendered by ``ChatAnthropic._get_request_payload``.
    Needs ``langchain`` and ``langchain-anthropic``.
    """
    from langchain.agents.middleware.types import ModelRequest, ModelResponse
    from langchain_anthropic import ChatAnthropic
    from langchain_anthropic.middleware import AnthropicPromptCachingMiddleware
    from langchain_core.messages import AIMessage, SystemMessage, convert_to_messages
    from langchain_core.tools import BaseTool, StructuredTool

    chat = to_openai_chat(body, src)
    messages = convert_to_messages(chat.get("messages") or [])
    system = messages[0] if messages and isinstance(messages[0], SystemMessage) else None
    rest = messages[1:] if system is not None else messages

    def _noop(**_: Any) -> str:
        return ""

    tools: list[BaseTool | dict[str, Any]] = [
        StructuredTool(
            name=t["function"]["name"],
            description=t["function"].get("description", ""),
            args_schema=t["function"].get("parameters") or {"type": "object", "properties": {}},
            func=_noop,
        )
        for t in chat.get("tools") or []
    ]
    llm = ChatAnthropic(model_name=model, api_key="unused", max_tokens=1024, timeout=None, stop=None)  # type: ignore[call-arg]
    request = ModelRequest(
        model=llm,
        messages=list(rest),  # type: ignore[arg-type]
        system_message=system,
        tools=tools,
        tool_choice=_langchain_tool_choice(chat.get("tool_choice")),
    )
    captured: list[Any] = []

    def handler(req: Any) -> Any:
        captured.append(req)
        return ModelResponse(result=[AIMessage(content="")])

    AnthropicPromptCachingMiddleware().wrap_model_call(request, handler)
    req = captured[0]
    if req.tools:
        bound = req.model.bind_tools(req.tools, tool_choice=req.tool_choice, **req.model_settings)
    else:
        bound = req.model.bind(**req.model_settings)
    sent = [req.system_message, *req.messages] if req.system_message else list(req.messages)
    payload: Json = req.model._get_request_payload(sent, **bound.kwargs)
    return {k: v for k, v in payload.items() if v is not None}


# --------------------------------------------------------------------------------------------
# Hit-rate bench
# --------------------------------------------------------------------------------------------


def run_hitrate(
    lines: Sequence[TraceLine],
    provider: Provider,
    *,
    model: str | None = None,
    arms: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> HitrateReport:
    """Simulate ``lines`` against ``provider`` for each arm (all applicable by default)."""
    if provider not in PROVIDER_FORMATS:
        raise ValueError(f"provider={provider!r}: use openai, anthropic, bedrock or gemini")
    if not lines:
        raise ValueError("empty trace")
    fmt = PROVIDER_FORMATS[provider]
    # An OpenAI trace logged through the Responses API stays in Responses.
    if provider == "openai" and lines[0].format is WireFormat.OPENAI_RESPONSES:
        fmt = WireFormat.OPENAI_RESPONSES
    src_model = str(lines[0].body.get("model") or lines[0].body.get("modelId") or "")
    target_model = model or default_model(src_model, fmt)
    wanted = [a for a in (arms or ARMS) if a != "langchain_middleware" or provider == "anthropic"]

    sent: list[tuple[float, str, WireFormat, Json]] = []
    for line in lines:
        body = line.body
        if line.format is not fmt or model is not None:
            body = convert(body, line.format, fmt, model=target_model)
        sent.append((line.ts, line.tenant, fmt, body))

    results: dict[str, ArmResult] = {}
    for arm in wanted:
        usages: list[CacheUsage] = []
        if arm == "oracle":
            usages = oracle_usage(sent, target_model)
        else:
            sim = Simulator(provider=provider)
            pc = PromptCache()
            for n, (ts, tenant, f, body) in enumerate(sent):
                out = body
                if arm == "promptcache":
                    out = pc.prepare_request(body, format=f, model=target_model, tenant=tenant).body
                elif arm == "langchain_middleware":
                    out = langchain_middleware_body(body, f, target_model)
                usages.append(sim.feed(ts, f, out, org=tenant, model=target_model).usage)
                if progress is not None:
                    progress(n)
        results[arm] = _total(usages, provider, target_model)
    return HitrateReport(provider=provider, model=target_model, format=fmt, requests=len(sent), arms=results)


def render_report(report: HitrateReport) -> str:
    """The report as a plain-text table."""
    head = (
        f"{'arm':<22}{'requests':>9}{'input':>10}{'cached':>10}{'written':>10}"
        f"{'cached %':>10}{'cost $':>11}{'/oracle':>9}"
    )
    rows = [f"{report.provider} · {report.model} · {report.format.value} · {report.requests} requests", head]
    for name, a in report.arms.items():
        rows.append(
            f"{name:<22}{a.requests:>9}{a.input_tokens:>10}{a.cached_read_tokens:>10}{a.cache_write_tokens:>10}"
            f"{a.cached_fraction:>10.1%}{a.cost_usd:>11.4f}{report.ratio_to_oracle(name):>9.3f}"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``promptcache bench hitrate``, ``bench traces`` and ``bench agents`` to the CLI."""
    p = sub.add_parser("bench", help="offline cache hit-rate benchmarks")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    h = bsub.add_parser("hitrate", help="simulate a JSON-lines trace per arm (as sent, promptcache, ...)")
    h.add_argument(
        "trace", help="request log, JSON lines: {ts, tenant, format, body} (see docs/guides/request-log.md)"
    )
    h.add_argument(
        "--provider",
        choices=sorted(PROVIDER_FORMATS),
        required=True,
        help="whose prompt-cache rules to simulate (the trace is converted to its wire format)",
    )
    h.add_argument("--model", help="target model (default: the trace's, or the provider's default)")
    h.add_argument("--json", action="store_true", help="one JSON object with the arms under 'arms'")
    h.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    h.set_defaults(func=_cli_hitrate)
    t = bsub.add_parser("traces", help="write the tau-bench scenario traces as JSON lines")
    t.add_argument("--out", default="traces", help="output directory (default: traces)")
    t.add_argument(
        "--format",
        default="openai-chat",
        choices=[f.value for f in WireFormat],
        help="wire format of the written request bodies (default: openai-chat)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    t.set_defaults(func=_cli_traces)
    # Imported here: bench_agents builds on this module (oracle, LangChain middleware).
    from promptcache.lab.bench_agents import register_agents

    register_agents(bsub)


def _cli_hitrate(args: argparse.Namespace) -> int:
    lines = read_trace_for("bench", args.trace, "trace")
    if lines is None:
        return 2
    from promptcache._cliutil import progress

    arms = len(
        [a for a in ARMS if a != "oracle" and (a != "langchain_middleware" or args.provider == "anthropic")]
    )
    done = 0

    def step(_n: int) -> None:
        nonlocal done
        done += 1
        update(done)

    with progress("simulating", arms * len(lines), enabled=not args.no_progress) as update:
        report = run_hitrate(lines, args.provider, model=args.model, progress=step)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(render_report(report))
    return 0


def _cli_traces(args: argparse.Namespace) -> int:
    from promptcache._cliutil import progress

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domains: tuple[Domain, ...] = ("airline", "retail")
    todo = [(d, s) for d in domains for s in SCENARIOS]
    with progress("writing traces", len(todo), enabled=not args.no_progress) as update:
        for i, (domain, scenario) in enumerate(todo, 1):
            path = out / f"tau_{domain}_{scenario}.jsonl"
            n = write_trace(path, build_trace(scenario, domain=domain, format=args.format))
            print(f"{path}: {n} requests")
            update(i)
    return 0
