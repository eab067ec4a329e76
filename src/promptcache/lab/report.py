"""``promptcache report INPUT... --out DIR``: one self-contained HTML page (and PNG charts) of cache figures.

A person reading a cache report wants four pictures, not a JSON dump: how much of each prompt
came from the cache call after call, what the traffic cost with and without promptcache, why the
cache missed, and how the arms of a benchmark compare. This module reads whatever run produced
the figures and draws those pictures:

* ``promptcache bench hitrate --json`` — per-arm cached share and cost (as sent, promptcache,
  LangChain middleware, oracle);
* ``promptcache audit --json`` — cache killers (counts per kind and place) and projected cost per
  provider: uncached, as sent, with promptcache;
* ``make bench`` (``benchmarks/run.py``) JSON — the hit-rate arms of every scenario, per provider;
* recorded metrics — a ``CacheMetrics`` dump (``{"records": {...}}``, what a LangGraph
  ``cache_metrics`` channel or ``create_agent`` state holds): cached share per call and cumulative
  cost with and without caching; a ``CacheStats`` dump (``{"rows": [...], "total": {...}}``,
  ``PromptCache.stats()``): per tenant and model;
* ``promptcache demo --json`` — cached share per call, as sent and through promptcache;
* a JSON-lines request log/trace (``{ts, tenant, format, body}``) — simulated offline here, call by
  call, as sent and through promptcache, with the miss reasons the engine names.

The page is one file (CSS inline, charts embedded as base64 PNGs) so it can be mailed or attached
to a ticket; the PNGs are also written next to it for slides and issues. Charts are drawn with
matplotlib on the Agg backend through ``Figure`` objects (no pyplot global state, no display).

Prompt text never appears: the inputs carry figures, kinds and positions, and inputs are named by
file name and a SHA-256 digest of their bytes.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import functools
import hashlib
import html
import io
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

__all__ = ["Chart", "Section", "build_report", "load_sections", "register", "render_html", "write_report"]

Json = dict[str, Any]

# One colour per arm, the same on every chart, so a reader learns it once.
COLORS = {
    "uncached": "#c5221f",
    "as_sent": "#9aa0a6",
    "promptcache": "#1a73e8",
    "langchain_middleware": "#e37400",
    "oracle": "#188038",
}
_FALLBACK = ["#7b1fa2", "#00897b", "#5d4037", "#3949ab"]
ARM_LABELS = {
    "uncached": "no caching",
    "as_sent": "as sent",
    "promptcache": "promptcache",
    "langchain_middleware": "LangChain\nmiddleware",
    "oracle": "oracle\n(upper bound)",
}


@dataclass
class Chart:
    """One figure: ``slug`` names its PNG file; ``png`` is the rendered image."""

    slug: str
    title: str
    png: bytes
    caption: str = ""


@dataclass
class Table:
    """A small table of figures shown under the charts of a section."""

    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """What one input contributes: headline figures, charts, a table and notes."""

    title: str
    source: str
    kpis: list[tuple[str, str]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------


def _figure(width: float = 7.5, height: float = 3.6) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas: no display, no pyplot global state."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # an optional dependency: say which one and how to get it
        raise RuntimeError(
            "promptcache report draws its charts with matplotlib: pip install matplotlib"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


P = ParamSpec("P")


def _literal_text(chart: Callable[P, bytes]) -> Callable[P, bytes]:
    """Draw ``chart`` with every label as written: names come from the data (tenants, models,
    arms), and matplotlib would read a ``$...$`` in one as mathtext and fail on it (issue 19)."""

    @functools.wraps(chart)
    def draw(*args: P.args, **kwargs: P.kwargs) -> bytes:
        from matplotlib import rc_context

        with rc_context({"text.parse_math": False}):
            return chart(*args, **kwargs)

    return draw


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e8eaed", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # Fixed metadata so the same figures give the same bytes (reproducible reports and diffs).
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _color(name: str, i: int) -> str:
    return COLORS.get(name, _FALLBACK[i % len(_FALLBACK)])


def _percent_axis(ax: Any, top: float = 1.0) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(0, max(top, 0.05) * 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))


@_literal_text
def chart_share_per_call(series: dict[str, list[float]], title: str) -> bytes:
    """Cached share of each call's prompt, one line per arm."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (name, ys) in enumerate(series.items()):
        xs = list(range(1, len(ys) + 1))
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.8, color=_color(name, i), label=_flat(name))
    _percent_axis(ax)
    ax.set_xlabel("call", fontsize=9)
    ax.set_ylabel("prompt read from cache", fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


@_literal_text
def chart_cumulative_cost(series: dict[str, list[float]], title: str) -> bytes:
    """Running total of cost per arm (``uncached``: every prompt token at the input rate)."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (name, per_call) in enumerate(series.items()):
        total, ys = 0.0, []
        for c in per_call:
            total += c
            ys.append(total)
        # Dashed for the no-caching baseline: it often lies under "as sent" and must stay visible.
        style = "--" if name == "uncached" else "-"
        ax.plot(range(1, len(ys) + 1), ys, style, linewidth=2, color=_color(name, i), label=_flat(name))
        if ys:
            ax.annotate(
                f"${ys[-1]:.4f}",
                (len(ys), ys[-1]),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=8,
                color=_color(name, i),
                va="center",
            )
    ax.set_xlabel("call", fontsize=9)
    ax.set_ylabel("cumulative cost (USD)", fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.margins(x=0.12)
    return _png(fig)


@_literal_text
def chart_bars(values: dict[str, float], title: str, *, percent: bool, ylabel: str) -> bytes:
    """One bar per arm, value printed on top."""
    fig = _figure(6.5, 3.4)
    ax = fig.add_subplot()
    names = list(values)
    bars = ax.bar(
        [_label(n) for n in names],
        [values[n] for n in names],
        color=[_color(n, i) for i, n in enumerate(names)],
        width=0.6,
    )
    for b, n in zip(bars, names, strict=True):
        v = values[n]
        ax.annotate(
            f"{v:.1%}" if percent else f"${v:.4f}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=9,
        )
    if percent:
        _percent_axis(ax, max(values.values(), default=1.0))
    else:
        ax.set_ylim(0, max(values.values(), default=1.0) * 1.18 or 1.0)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    return _png(fig)


@_literal_text
def chart_grouped(groups: dict[str, dict[str, float]], title: str, *, percent: bool, ylabel: str) -> bytes:
    """Groups on the x axis (scenarios, providers), one bar per arm inside each group."""
    arms: list[str] = []
    for g in groups.values():
        arms += [a for a in g if a not in arms]
    fig = _figure(max(7.5, 1.1 * len(groups) * max(1, len(arms)) / 2.2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(arms))
    names = list(groups)
    for j, arm in enumerate(arms):
        xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(names))]
        ys = [groups[g].get(arm, 0.0) for g in names]
        ax.bar(xs, ys, width=width * 0.95, color=_color(arm, j), label=_flat(arm))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(
        names, fontsize=8, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    top = max((v for g in groups.values() for v in g.values()), default=1.0)
    if percent:
        _percent_axis(ax, top)
    else:
        ax.set_ylim(0, top * 1.15 or 1.0)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    _style(ax)
    ax.legend(
        fontsize=8, frameon=False, ncol=min(4, len(arms)), loc="upper center", bbox_to_anchor=(0.5, -0.18)
    )
    return _png(fig)


@_literal_text
def chart_reasons(counts: dict[str, int], title: str, *, fixed: dict[str, int] | None = None) -> bytes:
    """Horizontal bars: how many requests each miss reason hit, largest first.

    ``fixed`` (same keys) splits each bar into the part promptcache neutralizes and the rest.
    """
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    fig = _figure(7.5, max(2.2, 0.42 * len(items) + 1.1))
    ax = fig.add_subplot()
    labels = [_short(k, 58) for k, _ in reversed(items)]
    totals = [v for _, v in reversed(items)]
    if fixed is not None:
        done = [fixed.get(k, 0) for k, _ in reversed(items)]
        rest = [t - d for t, d in zip(totals, done, strict=True)]
        ax.barh(labels, done, color=COLORS["promptcache"], label="neutralized by promptcache")
        ax.barh(labels, rest, left=done, color=COLORS["uncached"], label="still breaks the prefix")
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    else:
        ax.barh(labels, totals, color=COLORS["uncached"])
    for y, t in enumerate(totals):
        ax.annotate(str(t), (t, y), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    ax.set_xlabel("requests", fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    ax.margins(x=0.1)
    _style(ax)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e8eaed", linewidth=0.8)
    return _png(fig)


def _label(name: str) -> str:
    return ARM_LABELS.get(name, name)


def _flat(name: str) -> str:
    return _label(name).replace("\n", " ")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _usd(x: float) -> str:
    return f"${x:,.4f}"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _source(path: Path, raw: bytes) -> str:
    # A digest, not the content: enough to tell which run a report came from.
    return f"{path.name} · sha256 {hashlib.sha256(raw).hexdigest()[:12]}"


def _hitrate_section(d: Json, source: str) -> Section:
    arms: dict[str, Json] = d["arms"]
    s = Section(title=f"Hit-rate benchmark · {d.get('provider')} · {d.get('model')}", source=source)
    share = {k: float(a["cached_fraction"]) for k, a in arms.items()}
    money = {k: float(a["cost_usd"]) for k, a in arms.items() if k != "oracle"}
    if "promptcache" in share:
        s.kpis.append(("cached with promptcache", _pct(share["promptcache"])))
    if "as_sent" in share:
        s.kpis.append(("cached as sent", _pct(share["as_sent"])))
    if "as_sent" in money and "promptcache" in money and money["as_sent"]:
        s.kpis.append(("cost vs as sent", f"{money['promptcache'] / money['as_sent'] - 1:+.0%}"))
    s.kpis.append(("requests", str(d.get("requests", "?"))))
    s.charts.append(
        Chart(
            "arms-cached-share",
            "Cached share per arm",
            chart_bars(share, "Prompt tokens read from cache", percent=True, ylabel="cached share"),
        )
    )
    s.charts.append(
        Chart(
            "arms-cost",
            "Cost per arm",
            chart_bars(money, "Cost of the trace (USD, simulated)", percent=False, ylabel="USD"),
            "The oracle is an upper bound on cached share, not a price; it is left out here.",
        )
    )
    oracle = share.get("oracle") or 0.0
    s.tables.append(
        Table(
            ["arm", "requests", "input tokens", "cached", "written", "cached share", "cost", "/ oracle"],
            [
                [
                    _flat(k),
                    str(a["requests"]),
                    f"{a['input_tokens']:,}",
                    f"{a['cached_read_tokens']:,}",
                    f"{a['cache_write_tokens']:,}",
                    _pct(a["cached_fraction"]),
                    _usd(a["cost_usd"]),
                    f"{a['cached_fraction'] / oracle:.3f}" if oracle else "–",
                ]
                for k, a in arms.items()
            ],
        )
    )
    return s


def _audit_section(d: Json, source: str) -> Section:
    s = Section(title="Request-log audit", source=source)
    findings: list[Json] = d.get("findings") or []
    savings: list[Json] = d.get("savings") or []
    s.kpis += [
        ("requests", f"{d['requests']:,}"),
        ("cacheable share", _pct(d["cacheable_share"])),
        ("cache killers", str(len(findings))),
    ]
    if savings:
        best = max(savings, key=lambda x: x["savings_promptcache"])
        s.kpis.append((f"saved with promptcache ({best['provider']})", _pct(best["savings_promptcache"])))
    if findings:
        counts = {f"{f['kind']} · {f['where']}": int(f["requests"]) for f in findings}
        s.charts.append(
            Chart("miss-reasons", "Miss reasons", chart_reasons(counts, "Cache killers (requests hit)"))
        )
    else:
        s.notes.append("No cache killer found in this log.")
    if savings:
        groups = {
            x["provider"]: {
                "uncached": x["cost_uncached_usd"],
                "as_sent": x["cost_as_sent_usd"],
                "promptcache": x["cost_promptcache_usd"],
            }
            for x in savings
        }
        s.charts.append(
            Chart(
                "cost-per-provider",
                "Cost with and without promptcache",
                chart_grouped(
                    groups, "Prompt cost per provider (USD, projected)", percent=False, ylabel="USD"
                ),
            )
        )
        s.tables.append(
            Table(
                [
                    "provider",
                    "model",
                    "no caching",
                    "as sent",
                    "promptcache",
                    "saved as sent",
                    "saved with promptcache",
                ],
                [
                    [
                        x["provider"],
                        x["model"],
                        _usd(x["cost_uncached_usd"]),
                        _usd(x["cost_as_sent_usd"]),
                        _usd(x["cost_promptcache_usd"]),
                        _pct(x["savings_as_sent"]),
                        _pct(x["savings_promptcache"]),
                    ]
                    for x in savings
                ],
            )
        )
    if findings:
        s.tables.append(
            Table(
                ["cache killer", "where", "requests", "first request"],
                [[f["kind"], f["where"], str(f["requests"]), f"#{f['first_request']}"] for f in findings],
            )
        )
    return s


def _make_bench_sections(d: Json, source: str) -> list[Section]:
    results: Json = d.get("results") or {}
    hit = results.get("bench_hitrate")
    out: list[Section] = []
    if isinstance(hit, dict) and isinstance(hit.get("scenarios"), dict):
        by_provider: dict[str, dict[str, dict[str, float]]] = {}
        for name, r in hit["scenarios"].items():
            domain, scenario, provider = [*name.split("/"), "", "", ""][:3]
            group = f"{scenario} ({domain})"
            by_provider.setdefault(provider, {})[group] = {
                arm: float(a["cached_fraction"]) for arm, a in r["arms"].items()
            }
        s = Section(title="make bench · cache hit rate per scenario", source=source)
        met = hit.get("all_targets_met")
        s.kpis.append(("scenarios", str(len(hit["scenarios"]))))
        s.kpis.append(("targets met", "all" if met else f"{len(hit.get('targets_missed') or [])} missed"))
        for provider, groups in sorted(by_provider.items()):
            s.charts.append(
                Chart(
                    f"scenarios-{provider}",
                    f"Arms per scenario · {provider}",
                    chart_grouped(
                        groups,
                        f"Cached share per scenario · {provider} rules",
                        percent=True,
                        ylabel="cached share",
                    ),
                )
            )
        s.notes += [f"target missed: {m}" for m in hit.get("targets_missed") or []]
        out.append(s)
    other = {k: v for k, v in results.items() if k != "bench_hitrate" and isinstance(v, dict)}
    if other:
        s = Section(title="make bench · other figures", source=source)
        rows = []
        for bench, figures in other.items():
            for k, v in figures.items():
                # Only the headline scalars (ratios, targets): nested timing tables stay in the JSON.
                if isinstance(v, bool | int | float) and (
                    "ratio" in k or k.startswith("target") or k.endswith("_us")
                ):
                    rows.append([bench, k, f"{v:.3f}" if isinstance(v, float) else str(v)])
        if "error" in str(other):
            s.notes.append("Some benchmarks reported an error; see the JSON.")
        if rows:
            s.tables.append(Table(["benchmark", "figure", "value"], rows))
            out.append(s)
    if not out:
        raise ValueError("a make bench report without any figure this report can draw")
    if not isinstance(hit, dict):
        out[0].notes.append("This run has no bench_hitrate results: no arm comparison to draw.")
    return out


def _metrics_section(d: Json, source: str) -> Section:
    from promptcache.metrics import CacheMetrics

    m = CacheMetrics.model_validate(d)
    model_calls = [r for r in m.records.values() if r.kind == "model" and not r.local_hit]
    s = Section(title="Recorded cache metrics", source=source)
    s.kpis += [
        ("model calls", str(m.calls)),
        ("cached share", _pct(m.hit_rate)),
        ("cost", _usd(m.cost_usd)),
        ("cost avoided", _usd(m.cost_avoided_usd)),
    ]
    if m.local_hits:
        s.kpis.append(("served locally", str(m.local_hits)))
    if model_calls:
        share = [r.cache_read_tokens / r.input_tokens if r.input_tokens else 0.0 for r in model_calls]
        s.charts.append(
            Chart(
                "share-per-call",
                "Cached share per call",
                chart_share_per_call({"promptcache": share}, "Prompt read from cache, call by call"),
                "Calls in the order they were recorded.",
            )
        )
        with_ = [r.cost_nusd / 1e9 for r in model_calls]
        without = [(r.cost_nusd + r.cost_avoided_nusd) / 1e9 for r in model_calls]
        s.charts.append(
            Chart(
                "cumulative-cost",
                "Cost with and without caching",
                chart_cumulative_cost({"uncached": without, "promptcache": with_}, "Cumulative cost (USD)"),
                "Without caching: every prompt token at the plain input rate, as priced by the catalog.",
            )
        )
    if m.unpriced_calls:
        s.notes.append(
            f"{m.unpriced_calls} calls use a model the price catalog does not know: not counted in cost."
        )
    return s


def _stats_section(d: Json, source: str) -> Section:
    from promptcache.stats import CacheStats

    st = CacheStats.model_validate(d)
    t = st.total
    s = Section(title="Cache statistics per tenant and model", source=source)
    s.kpis += [
        ("calls", f"{t.calls:,}"),
        ("cached share", _pct(t.hit_rate)),
        ("cost", _usd(t.cost_usd)),
        ("cost avoided", _usd(t.cost_avoided_usd)),
    ]
    rows = st.rows or [t]
    groups = {
        f"{r.tenant or '–'} · {r.model or '–'}": {
            "uncached": r.cost_usd + r.cost_avoided_usd,
            "promptcache": r.cost_usd,
        }
        for r in rows
    }
    s.charts.append(
        Chart(
            "cost-per-tenant",
            "Cost with and without caching",
            chart_grouped(groups, "Cost per tenant and model (USD)", percent=False, ylabel="USD"),
        )
    )
    s.tables.append(
        Table(
            ["tenant", "model", "calls", "input tokens", "cached", "cached share", "cost", "avoided"],
            [
                [
                    r.tenant or "–",
                    r.model or "–",
                    str(r.calls),
                    f"{r.input_tokens:,}",
                    f"{r.cache_read_tokens:,}",
                    _pct(r.hit_rate),
                    _usd(r.cost_usd),
                    _usd(r.cost_avoided_usd),
                ]
                for r in rows
            ],
        )
    )
    return s


def _demo_section(d: Json, source: str) -> Section:
    calls: list[Json] = d["calls"]
    arms: Json = d.get("arms") or {}
    s = Section(title=f"Demo · {d.get('provider')} · {d.get('model')}", source=source)
    for k in ("as_sent", "promptcache"):
        if k in arms:
            s.kpis.append(
                (
                    f"cached {'as sent' if k == 'as_sent' else 'with promptcache'}",
                    _pct(float(arms[k]["cached_fraction"])),
                )
            )
    series = {
        "as_sent": [
            min(1.0, c["as_sent_cached_tokens"] / c["input_tokens"]) if c["input_tokens"] else 0.0
            for c in calls
        ],
        "promptcache": [float(c["cached_share"]) for c in calls],
    }
    s.charts.append(
        Chart(
            "share-per-call",
            "Cached share per call",
            chart_share_per_call(series, "Prompt read from cache, call by call"),
        )
    )
    costs = {k: float(a["cost_usd"]) for k, a in arms.items() if "cost_usd" in a}
    if costs:
        s.charts.append(
            Chart(
                "arms-cost",
                "Cost per arm",
                chart_bars(costs, "Cost of the conversation (USD)", percent=False, ylabel="USD"),
            )
        )
    return s


def _agent_demo_sections(d: Json, source: str) -> list[Section]:
    """``promptcache demo --json`` (the agent demo): each provider without and with promptcache."""
    out = []
    for provider, p in d["providers"].items():
        arms = {"as_sent": p["without"], "promptcache": p["with"]}
        s = Section(title=f"Agent demo · {provider} · {p.get('model')}", source=source)
        for k, arm in arms.items():
            s.kpis.append(
                (
                    f"cached {'without' if k == 'as_sent' else 'with'} promptcache",
                    _pct(float(arm["totals"]["cached_share"])),
                )
            )
        s.kpis.append(("cost avoided", _usd(float(p.get("cost_avoided_usd", 0.0)))))
        series = {k: [float(c["cached_share"]) for c in arm["calls"]] for k, arm in arms.items()}
        s.charts.append(
            Chart(
                "share-per-call",
                "Cached share per call",
                chart_share_per_call(series, "Prompt read from cache, call by call"),
            )
        )
        costs = {k: float(arm["totals"]["cost_usd"]) for k, arm in arms.items()}
        s.charts.append(
            Chart(
                "arms-cost",
                "Cost per arm",
                chart_bars(costs, "Cost of the conversation (USD)", percent=False, ylabel="USD"),
            )
        )
        out.append(s)
    if not out:
        raise ValueError("a demo report without any provider")
    return out


def _trace_sections(path: Path, source: str, provider: str) -> list[Section]:
    """Simulate a request log call by call, as sent and through promptcache."""
    from promptcache.engine import PromptCache
    from promptcache.lab.bench import PROVIDER_FORMATS
    from promptcache.lab.convert import convert, default_model
    from promptcache.lab.simulate import Simulator
    from promptcache.lab.traces import read_trace
    from promptcache.pricing import cost
    from promptcache.usage import CacheUsage

    lines = read_trace(path)
    if not lines:
        raise ValueError("the request log is empty")
    fmt = PROVIDER_FORMATS[provider]
    model = default_model(str(lines[0].body.get("model") or lines[0].body.get("modelId") or ""), fmt)
    share: dict[str, list[float]] = {"as_sent": [], "promptcache": []}
    money: dict[str, list[float]] = {"uncached": [], "as_sent": [], "promptcache": []}
    tokens: dict[str, list[int]] = {"as_sent": [0, 0], "promptcache": [0, 0]}  # [read, input]
    reasons: Counter[str] = Counter()
    fixed: Counter[str] = Counter()
    pc = PromptCache()
    sims = {"as_sent": Simulator(provider=provider), "promptcache": Simulator(provider=provider)}
    for line in lines:
        body = line.body if line.format is fmt else convert(line.body, line.format, fmt, model=model)
        prepared = pc.prepare_request(body, format=fmt, model=model, tenant=line.tenant)
        # Causes only (tool order, key order, volatile value, ...): never the changed text.
        for ch in prepared.plan.explain().changes:
            key = ch.cause.replace("_", " ")
            reasons[key] += 1
            fixed[key] += 1 if ch.neutralized else 0
        for arm, out in (("as_sent", body), ("promptcache", prepared.body)):
            u = sims[arm].feed(line.ts, fmt, out, org=line.tenant, model=model).usage
            share[arm].append(u.cached_fraction)
            tokens[arm][0] += u.cache_read_tokens
            tokens[arm][1] += u.input_tokens
            money[arm].append(float(cost(u).total))
            if arm == "as_sent":
                plain = CacheUsage(
                    provider=provider, model=model, input_tokens=u.input_tokens, output_tokens=u.output_tokens
                )
                money["uncached"].append(float(cost(plain).total))
    s = Section(title=f"Request log · {provider} · {model} (simulated call by call)", source=source)
    tot = {k: sum(v) for k, v in money.items()}
    s.kpis += [
        ("requests", f"{len(lines):,}"),
        ("cached as sent", _pct(_ratio(*tokens["as_sent"]))),
        ("cached with promptcache", _pct(_ratio(*tokens["promptcache"]))),
    ]
    if tot["as_sent"]:
        s.kpis.append(("cost vs as sent", f"{tot['promptcache'] / tot['as_sent'] - 1:+.0%}"))
    s.charts.append(
        Chart(
            "share-per-call",
            "Cached share per call",
            chart_share_per_call(share, "Prompt read from cache, call by call"),
        )
    )
    s.charts.append(
        Chart(
            "cumulative-cost",
            "Cost with and without promptcache",
            chart_cumulative_cost(money, "Cumulative prompt cost (USD, simulated)"),
            "No caching: every prompt token at the plain input rate.",
        )
    )
    if reasons:
        s.charts.append(
            Chart(
                "miss-reasons",
                "Miss reasons",
                chart_reasons(
                    dict(reasons), "What changed in the prefix since the previous call", fixed=dict(fixed)
                ),
                "Counted per request by the engine's explanation; "
                "the first request of each prefix family is not a change.",
            )
        )
    s.tables.append(
        Table(
            ["arm", "cost", "vs no caching"],
            [
                [_flat(k), _usd(v), f"{v / tot['uncached'] - 1:+.0%}" if tot["uncached"] else "–"]
                for k, v in tot.items()
            ],
        )
    )
    return [s]


def _ratio(part: int, whole: int) -> float:
    # Token-weighted, like every other cached share in promptcache (not a mean of per-call shares).
    return part / whole if whole else 0.0


def _is_report_input(d: Json) -> bool:
    """Whether ``d`` has the shape of one of the JSON documents :func:`_sections_of` reads."""
    return (
        isinstance(d.get("reports"), list)
        or d.get("demo") == "agent"
        or ("rows" in d and "total" in d)
        or any(k in d for k in ("records", "findings", "results", "calls", "arms"))
    )


def _sections_of(d: Any, source: str) -> list[Section]:
    """Recognize a JSON document by its shape and turn it into sections."""
    if not isinstance(d, dict):
        raise ValueError(f"a JSON {type(d).__name__}, not an object; {INPUTS_HELP}")
    if isinstance(d.get("reports"), list):  # `promptcache demo --core --json`: one report per provider
        return [sec for r in d["reports"] for sec in _sections_of(r, source)]
    if d.get("demo") == "agent" and isinstance(d.get("providers"), dict):  # `promptcache demo --json`
        return _agent_demo_sections(d, source)
    if "records" in d:
        return [_metrics_section(d, source)]
    if "rows" in d and "total" in d:
        return [_stats_section(d, source)]
    if "findings" in d and "savings" in d:
        return [_audit_section(d, source)]
    if "results" in d:
        return _make_bench_sections(d, source)
    if "calls" in d and "arms" in d:
        return [_demo_section(d, source)]
    if "arms" in d:
        return [_hitrate_section(d, source)]
    raise ValueError(f"a JSON object with none of the shapes a report reads; {INPUTS_HELP}")


INPUTS_HELP = (
    "give the --json output of promptcache bench hitrate, audit or demo, make bench's "
    "bench-results.json, a CacheMetrics or CacheStats dump, or a JSON-lines request log"
)
"""The inputs ``promptcache report`` reads, as said in its error messages."""


def load_sections(path: str | Path, *, provider: str = "openai") -> list[Section]:
    """The report sections of one input file (JSON document or JSON-lines trace).

    Every error is a ``ValueError`` whose message starts with the file's name.
    """
    from promptcache.lab.traces import TraceError

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    source = _source(p, raw)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None  # not one JSON document: a JSON-lines log, or nothing readable (said per line)
    try:
        # A one-line log parses as one document: a request envelope (even a partial one) or a
        # bare request body that is no report input is a log line, whose reader says what is wrong.
        if doc is None or (
            isinstance(doc, dict)
            and not _is_report_input(doc)
            and {"ts", "tenant", "body", "messages", "contents"} & doc.keys()
        ):
            return _trace_sections(p, source, provider)
        return _sections_of(doc, source)
    except TraceError:
        raise  # names the file, the line and the field already
    except KeyError as exc:
        raise ValueError(
            f"{p}: field {exc.args[0]!r} is missing, so it is not a complete report input; {INPUTS_HELP}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#202124; --muted:#5f6368; --line:#e8eaed; --bg:#f8f9fa; --accent:#1a73e8; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding: 24px 40px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header p { margin:0; color: var(--muted); font-size:13px; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 40px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px;
          padding: 20px 24px; margin-bottom: 24px; }
section h2 { margin: 0 0 2px; font-size:18px; font-weight:600; }
.source { color: var(--muted); font-size:12px; margin: 0 0 14px;
          font-family: ui-monospace, Menlo, monospace; }
.kpis { display:flex; flex-wrap:wrap; gap:12px; margin-bottom: 16px; }
.kpi { flex: 1 1 150px; background: var(--bg); border-radius:8px; padding: 10px 14px; }
.kpi .v { font-size:24px; font-weight:600; color: var(--accent); }
.kpi .k { font-size:12px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
.charts { display:grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; background:#fff; }
figcaption { font-size:12px; color: var(--muted); margin-top:4px; }
table { border-collapse: collapse; width:100%; margin-top: 16px; font-size:13px; }
th, td { text-align:right; padding: 5px 8px; border-bottom:1px solid var(--line); }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align:left; }
th { color: var(--muted); font-weight:500; font-size:12px; }
.note { color: var(--muted); font-size:13px; margin: 8px 0 0; }
footer { color: var(--muted); font-size:12px; text-align:center; padding-bottom: 24px; }
"""


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def render_html(
    sections: Sequence[Section], *, title: str = "promptcache report", generated: str = ""
) -> str:
    """One self-contained HTML page: CSS inline, charts as ``data:`` PNGs, nothing fetched."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1><p>{len(sections)} section(s)"
        + (f" · generated {_esc(generated)}" if generated else "")
        + " · figures only: no prompt text is shown</p></header><main>",
    ]
    for s in sections:
        parts.append(f"<section><h2>{_esc(s.title)}</h2><p class=source>{_esc(s.source)}</p>")
        if s.kpis:
            parts.append("<div class=kpis>")
            parts += [
                f"<div class=kpi><div class=v>{_esc(v)}</div><div class=k>{_esc(k)}</div></div>"
                for k, v in s.kpis
            ]
            parts.append("</div>")
        if s.charts:
            parts.append("<div class=charts>")
            for c in s.charts:
                data = base64.b64encode(c.png).decode()
                cap = f"<figcaption>{_esc(c.caption)}</figcaption>" if c.caption else ""
                parts.append(
                    f'<figure><img alt="{_esc(c.title)}" src="data:image/png;base64,{data}">{cap}</figure>'
                )
            parts.append("</div>")
        for t in s.tables:
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{_esc(h)}</th>" for h in t.headers)
                + "</tr></thead><tbody>"
            )
            parts += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in t.rows]
            parts.append("</tbody></table>")
        parts += [f"<p class=note>{_esc(n)}</p>" for n in s.notes]
        parts.append("</section>")
    parts.append("</main><footer>promptcache report</footer></body></html>")
    return "\n".join(parts)


def build_report(
    inputs: Sequence[str | Path], *, provider: str = "openai", progress: Callable[[int], None] | None = None
) -> list[Section]:
    """Every input's sections, in the order given; ``progress(n)`` after each input read."""
    out: list[Section] = []
    for n, p in enumerate(inputs, 1):
        out += load_sections(p, provider=provider)
        if progress is not None:
            progress(n)
    return out


def write_report(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    provider: str = "openai",
    title: str = "promptcache report",
    now: Callable[[], _dt.datetime] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Json:
    """Write ``report.html`` and one PNG per chart into ``out_dir``; return what was written."""
    sections = build_report(inputs, provider=provider, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[str] = []
    for i, s in enumerate(sections, 1):
        for c in s.charts:
            name = f"{i:02d}-{c.slug}.png"
            (out / name).write_bytes(c.png)
            pngs.append(str(out / name))
    stamp = (now or (lambda: _dt.datetime.now(_dt.UTC)))().strftime("%Y-%m-%d %H:%M UTC")
    page = out / "report.html"
    page.write_text(render_html(sections, title=title, generated=stamp), encoding="utf-8")
    return {"html": str(page), "charts": pngs, "sections": [s.title for s in sections]}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``promptcache report`` to the CLI."""
    p = sub.add_parser("report", help="HTML report with charts from bench, audit, metrics or a request log")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="bench hitrate / audit / demo --json output, make bench's bench-results.json, "
        "a CacheMetrics or CacheStats dump, or a JSON-lines request log",
    )
    p.add_argument("--out", required=True, help="output directory (report.html and the PNG charts)")
    p.add_argument(
        "--provider",
        default="openai",
        choices=["openai", "anthropic", "bedrock", "gemini"],
        help="provider rules for simulating a JSON-lines trace (default: openai)",
    )
    p.add_argument("--title", default="promptcache report", help="page title (default: promptcache report)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from promptcache._cliutil import progress

    try:
        with progress("reading inputs", len(args.inputs), enabled=not args.no_progress) as update:
            written = write_report(
                args.inputs, args.out, provider=args.provider, title=args.title, progress=update
            )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"promptcache report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        print(f"{written['html']} ({len(written['charts'])} charts)")
    return 0
