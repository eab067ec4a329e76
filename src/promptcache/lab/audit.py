"""``promptcache audit LOG.jsonl``: how cacheable logged traffic is, what kills the cache, what it would save.

The log uses the trace line format (``{"ts", "tenant", "format", "body"}``). The audit reports:

* the cacheable share: tokens whose content the same tenant had already sent within
  the TTL (the ``oracle`` of :mod:`promptcache.lab.bench`);
* each cache killer found, with where it sits — volatile values in the prefix (from the
  engine's plan fragments: kind, block and line, never the value itself), unstable tool
  order or JSON key order, content changed before stable blocks (a block whose change
  shifts an unchanged history), prompts under the provider's minimum cacheable length;
* projected savings per provider, as sent and with promptcache, against paying every
  prompt token at the plain input rate.

Prompt text is never printed: findings name kinds and positions only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from promptcache._cliutil import progress as progress_display
from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.bench import ArmResult, oracle_usage, run_hitrate
from promptcache.lab.convert import to_openai_chat
from promptcache.lab.simulate import min_cacheable_tokens, render
from promptcache.lab.traces import TraceLine, read_trace_for
from promptcache.pricing import cost
from promptcache.usage import CacheUsage

__all__ = ["AuditReport", "Finding", "ProviderSavings", "audit", "register"]

Json = dict[str, Any]


class Finding(BaseModel):
    """One kind of cache killer, where it sits, and how many requests it hit."""

    kind: str
    where: str
    requests: int
    first_request: int


class ProviderSavings(BaseModel):
    """Projected prompt cost for one provider, as sent and with promptcache."""

    provider: str
    model: str
    cost_uncached_usd: float
    cost_as_sent_usd: float
    cost_promptcache_usd: float
    savings_as_sent: float
    savings_promptcache: float


class AuditReport(BaseModel):
    """``promptcache audit`` output."""

    requests: int
    input_tokens: int
    cacheable_tokens: int
    cacheable_share: float
    findings: list[Finding]
    savings: list[ProviderSavings]


def _tools_of(chat: Json) -> list[Json]:
    return [t.get("function", t) for t in chat.get("tools") or [] if isinstance(t, dict)]


def _key_orders(obj: Any) -> Any:
    """The nested key order of a JSON value (what sorting keys would change)."""
    if isinstance(obj, dict):
        return [(k, _key_orders(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_key_orders(v) for v in obj]
    return None


def _message_key(m: Json) -> str:
    return json.dumps(m, sort_keys=True)


def audit(
    lines: Sequence[TraceLine],
    *,
    providers: Sequence[str] = ("openai", "anthropic", "bedrock", "gemini"),
    progress: bool = False,
) -> AuditReport:
    """Audit logged requests; see the module docstring for what is reported."""
    if not lines:
        raise ValueError("empty log")
    found: dict[tuple[str, str], list[int]] = {}

    def note(kind: str, where: str, n: int) -> None:
        found.setdefault((kind, where), []).append(n)

    engines: dict[WireFormat, PromptCache] = {}
    prev: dict[str, Json] = {}
    with progress_display("auditing", len(lines), enabled=progress) as update:
        for n, line in enumerate(lines):
            fmt = line.format
            body = line.body
            chat = to_openai_chat(body, fmt)
            model = str(body.get("model") or body.get("modelId") or "")
            # Volatile values the engine relocates: its plan names kind, block and line.
            pc = engines.setdefault(fmt, PromptCache())
            plan = pc.prepare_request(body, format=fmt, model=model or None, tenant=line.tenant).plan
            for f in plan.fragments:
                where = f"{f.source}, line {f.line}" if f.path is None else f"{f.source} {f.path}"
                note(f"volatile value in prefix: {f.kind}", where, n)
            r = render(fmt, body, model or None)
            minimum = min_cacheable_tokens(r.model)
            if r.total_tokens < minimum:
                note("prefix under the minimum", f"{r.total_tokens} tokens < {minimum} ({r.model})", n)
            before = prev.get(line.tenant)
            if before is not None:
                _compare(before, chat, n, note)
            prev[line.tenant] = chat
            update(n + 1)

    sent = [(x.ts, x.tenant, x.format, x.body) for x in lines]
    oracle = oracle_usage(sent)
    inp = sum(u.input_tokens for u in oracle)
    cacheable = sum(u.cache_read_tokens for u in oracle)
    savings = [_savings(lines, p) for p in providers]
    findings = [
        Finding(kind=k, where=w, requests=len(ns), first_request=ns[0])
        for (k, w), ns in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    return AuditReport(
        requests=len(lines),
        input_tokens=inp,
        cacheable_tokens=cacheable,
        cacheable_share=round(cacheable / inp, 4) if inp else 0.0,
        findings=findings,
        savings=savings,
    )


def _compare(before: Json, chat: Json, n: int, note: Callable[[str, str, int], None]) -> None:
    """Killers visible only against the tenant's previous request."""
    t0, t1 = _tools_of(before), _tools_of(chat)
    names0, names1 = [t.get("name") for t in t0], [t.get("name") for t in t1]
    if names0 != names1 and sorted(map(str, names0)) == sorted(map(str, names1)):
        first = next(i for i, (a, b) in enumerate(zip(names0, names1, strict=True)) if a != b)
        note("unstable tool order", f"tools[{first}]", n)
    by_name = {t.get("name"): t for t in t0}
    for i, t in enumerate(t1):
        old = by_name.get(t.get("name"))
        if old is not None and old == t and _key_orders(old) != _key_orders(t):
            note("unstable JSON key order", f"tools[{i}] ({t.get('name')})", n)
    m0 = [_message_key(m) for m in before.get("messages") or []]
    m1 = [_message_key(m) for m in chat.get("messages") or []]
    changed = [i for i, (a, b) in enumerate(zip(m0, m1, strict=False)) if a != b]
    msgs = chat.get("messages") or []
    for i in changed:
        rest0, rest1 = m0[i + 1 :], m1[i + 1 :]
        # A changed block followed by blocks sent before, unchanged: the change sits in
        # front of stable content and costs all of it.
        if rest0 and rest1[: len(rest0)] == rest0:
            note("content changed before stable blocks", f"messages[{i}] ({msgs[i].get('role')})", n)
            return
    if changed and changed[0] == 0 and msgs[0].get("role") in ("system", "developer"):
        note("system prompt changed", "messages[0] (system)", n)


def _savings(lines: Sequence[TraceLine], provider: str) -> ProviderSavings:
    r = run_hitrate(lines, provider, arms=("as_sent", "promptcache"))  # type: ignore[arg-type]
    a, p = r.arms["as_sent"], r.arms["promptcache"]
    base = _uncached_cost(provider, r.model, a)
    return ProviderSavings(
        provider=provider,
        model=r.model,
        cost_uncached_usd=round(base, 6),
        cost_as_sent_usd=a.cost_usd,
        cost_promptcache_usd=p.cost_usd,
        savings_as_sent=round(1 - a.cost_usd / base, 4) if base else 0.0,
        savings_promptcache=round(1 - p.cost_usd / base, 4) if base else 0.0,
    )


def _uncached_cost(provider: str, model: str, arm: ArmResult) -> float:
    return float(cost(CacheUsage(provider=provider, model=model, input_tokens=arm.input_tokens)).total)


def render_report(report: AuditReport) -> str:
    """The audit as plain text."""
    out = [
        f"{report.requests} requests, {report.input_tokens} prompt tokens; cacheable share "
        f"{report.cacheable_share:.1%} (content already sent within the TTL)",
        "",
        "cache killers:" if report.findings else "cache killers: none found",
    ]
    for f in report.findings:
        out.append(f"  {f.kind:<40} at {f.where:<36} {f.requests:>5} requests (first #{f.first_request})")
    out += [
        "",
        f"{'provider':<10}{'model':<44}{'uncached $':>12}{'as sent $':>12}{'promptcache $':>15}{'saved':>14}",
    ]
    for s in report.savings:
        out.append(
            f"{s.provider:<10}{s.model:<44}{s.cost_uncached_usd:>12.4f}{s.cost_as_sent_usd:>12.4f}"
            f"{s.cost_promptcache_usd:>15.4f}{s.savings_as_sent:>6.0%} → {s.savings_promptcache:.0%}"
        )
    return "\n".join(out)


def register(sub: Any) -> None:
    """Add ``promptcache audit`` to the CLI."""
    p = sub.add_parser(
        "audit",
        help="cacheable share, cache killers and projected savings of a request log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "log", help="request log, JSON lines: {ts, tenant, format, body} (see docs/guides/request-log.md)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    lines = read_trace_for("audit", args.log, "log")
    if lines is None:
        return 2
    # Short logs finish before a bar would be read; the bar only ever draws on a terminal's stderr.
    report = audit(lines, progress=not args.no_progress and len(lines) >= 20)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(render_report(report))
    return 0
