"""``promptcache demo``: the main job (``make demo``).

By default it runs the agent demo of ``promptcache_langgraph.demo``: a real LangChain
``create_agent`` support agent (tau-bench airline policy and tools, a recorded conversation)
against the provider emulator in-process, without and then with ``PromptCacheMiddleware``, for
ChatOpenAI and ChatAnthropic. The core never imports an agent framework, so that module is
looked up at run time; where it is not installed, the core simulation below runs instead, with a
note saying so.

``promptcache demo --core`` is the core-only simulation: it replays the real tau-bench airline
conversation (gpt-4o as the agent, one model call per assistant turn) the way agent apps commonly send it: the
system prompt carries a clock line that changes on every call, and the tool
list comes in a different order each time. Each request is fed, as sent and
as rewritten by :meth:`PromptCache.prepare_request`, to the offline
provider prefix-cache simulator, which reports what the provider would have
read from its cache. No network, no Redis.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
from typing import Any

from promptcache.engine import PromptCache
from promptcache.lab.bundled import AGENTS
from promptcache.lab.convert import anthropic_messages as _anthropic_messages
from promptcache.lab.convert import anthropic_tools as _anthropic_tools
from promptcache.lab.simulate import Simulator
from promptcache.pricing import cost
from promptcache.usage import CacheUsage


def trajectory_requests(provider: str, *, task: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    """One request body per assistant turn of a real tau-bench conversation, with cache killers."""
    system = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()
    tools = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
    traj = json.loads((AGENTS / "tau_bench_airline_gpt4o_trajectories_sample.json").read_text())[task]["traj"]
    rng = random.Random(seed)
    bodies = []
    for i, m in enumerate(traj):
        if m["role"] != "assistant":
            continue
        shuffled = list(tools)
        rng.shuffle(shuffled)
        clock = f"Current time: 2024-05-15 15:{i:02d}:{rng.randrange(60):02d} EST\n"
        sys_i = system.replace("\n\n", "\n\n" + clock, 1)
        history = traj[1:i]
        if provider == "anthropic":
            bodies.append(
                {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 1024,
                    "system": sys_i,
                    "tools": _anthropic_tools(shuffled),
                    "messages": _anthropic_messages(history),
                }
            )
        else:
            bodies.append(
                {
                    "model": "gpt-4o",
                    "messages": [{"role": "system", "content": sys_i}, *history],
                    "tools": shuffled,
                }
            )
    return bodies


def run_demo(provider: str = "openai") -> dict[str, Any]:
    """Simulate the trajectory as sent and through promptcache; return per-call figures."""
    fmt = "anthropic-messages" if provider == "anthropic" else "openai-chat"
    bodies = trajectory_requests(provider)
    cache = PromptCache()
    arms: dict[str, Any] = {}
    calls: list[dict[str, Any]] = []
    for arm in ("as_sent", "promptcache"):
        sim = Simulator(provider=provider)
        total: CacheUsage | None = None
        for n, body in enumerate(bodies):
            sent = body
            explanation = ""
            if arm == "promptcache":
                prepared = cache.prepare_request(body, format=fmt)
                sent = prepared.body
                explanation = str(prepared.plan.explain())
            r = sim.feed(float(n * 20), fmt, sent)
            u = r.usage
            total = u if total is None else total + u
            if arm == "promptcache":
                calls.append(
                    {
                        "call": n + 1,
                        "input_tokens": u.input_tokens,
                        "cached_tokens": u.cache_read_tokens,
                        "cached_share": round(u.cached_fraction, 3),
                        "as_sent_cached_tokens": arms["as_sent"]["per_call"][n],
                        "explain": explanation,
                    }
                )
            arms.setdefault(arm, {"per_call": []})["per_call"].append(u.cache_read_tokens)
        assert total is not None
        c = cost(total)
        arms[arm].update(
            {
                "input_tokens": total.input_tokens,
                "cache_read_tokens": total.cache_read_tokens,
                "cache_write_tokens": total.cache_write_tokens,
                "cached_fraction": round(total.cached_fraction, 3),
                "cost_usd": round(float(c.total), 6),
            }
        )
    return {"provider": provider, "model": bodies[0]["model"], "calls": calls, "arms": arms}


def render(report: dict[str, Any]) -> str:
    """The demo report as plain text a person reads at a glance."""
    a, p = report["arms"]["as_sent"], report["arms"]["promptcache"]
    lines = [
        f"promptcache demo — real tau-bench airline conversation, {report['model']} "
        f"({report['provider']} prompt-cache rules, simulated offline)",
        "The app puts a clock line in its system prompt and shuffles its tools on every call.",
        "",
        f"{'call':>4}  {'prompt':>7}  {'cached as sent':>14}  {'cached w/ promptcache':>21}",
    ]
    for c in report["calls"]:
        lines.append(
            f"{c['call']:>4}  {c['input_tokens']:>7}  {c['as_sent_cached_tokens']:>14}  "
            f"{c['cached_tokens']:>12} ({c['cached_share']:.0%})"
        )
    saved = a["cost_usd"] - p["cost_usd"]
    lines += [
        "",
        f"cached share of prompt tokens: as sent {a['cached_fraction']:.0%}, "
        f"with promptcache {p['cached_fraction']:.0%}",
        f"prompt+cache cost: as sent ${a['cost_usd']:.4f}, with promptcache ${p['cost_usd']:.4f} "
        f"(saved ${saved:.4f}, {saved / a['cost_usd']:.0%})"
        if a["cost_usd"]
        else "",
        "",
        "call 2 — the clock changed for the first time, so promptcache starts moving it out",
        "of the prefix (a value that never changes stays where it is):",
        *("  " + x for x in report["calls"][1]["explain"].splitlines()),
        "call 3 — from then on the differences are absorbed:",
        *("  " + x for x in report["calls"][2]["explain"].splitlines()),
    ]
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add ``promptcache demo`` to the CLI."""
    p = sub.add_parser(
        "demo", help="a real LangChain agent without and with promptcache (--core: offline core simulation)"
    )
    p.add_argument(
        "--provider",
        choices=["openai", "anthropic", "both"],
        default="both",
        help="which provider's client and cache rules to run (default: both)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument(
        "--core", action="store_true", help="the core-only offline simulation (no agent framework needed)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=_cli)


AGENT_DEMO = "promptcache_langgraph.demo"
"""The agent demo's module (in the promptcache-langgraph package; imported only when asked for)."""


def _agent_demo() -> tuple[Any, str | None]:
    """The agent demo module, or None and why it cannot run here."""
    try:
        return importlib.import_module(AGENT_DEMO), None
    except ImportError as exc:
        return None, (
            f"note: the agent demo needs promptcache-langchain and promptcache-langgraph with "
            f"langchain-openai and langchain-anthropic (`make setup` installs them): {exc.name or exc} "
            "is missing. Running the core-only simulation instead (`promptcache demo --core`)."
        )


def _cli(args: Any) -> int:
    from promptcache._cliutil import progress

    # The demo's figures are simulated: they must not land in the user's store next to real ones.
    os.environ["PROMPTCACHE_RECORD_STATS"] = "0"
    providers = ["openai", "anthropic"] if args.provider == "both" else [args.provider]
    note = None
    if not args.core:
        mod, note = _agent_demo()
        if mod is not None:
            label = f"running the agent without and with promptcache ({', '.join(providers)})"
            with progress(label, enabled=not args.no_progress):
                report = mod.run_agent_demo(tuple(providers))
            print(json.dumps(report, indent=2) if args.json else mod.render(report))
            return 0
        print(note, file=sys.stderr)
    reports = []
    with progress("simulating", len(providers), enabled=not args.no_progress) as update:
        for i, p in enumerate(providers, 1):
            reports.append(run_demo(p))
            update(i)
    if args.json:
        out: dict[str, Any] = {"demo": "core", "reports": reports}
        if note:
            out["note"] = note
        print(json.dumps(out, indent=2))
    else:
        print("\n\n".join(render(r) for r in reports))
    return 0
