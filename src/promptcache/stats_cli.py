"""``promptcache stats [--store URL] [--by DIMS] [--json]``: cache figures from the configured store.

Every ``PromptCache`` writes its usage figures into its store (per tenant and model: calls,
tokens, cost; every few seconds, at ``close()`` and at exit; ``record_stats=False`` or
``PROMPTCACHE_RECORD_STATS=0`` turns that off), and processes that publish telemetry
(:func:`promptcache.telemetry.aggregate.publish`) add prefix hit rates, artifact-cache
lookups and miss reasons. This command reads them all back and shows, per tenant / model /
agent / entry type: calls, hit rate, cached share of prompt tokens, cost and cost avoided, and
the top miss reasons. The store is ``--store``, else ``$PROMPTCACHE_STORE``, else the embedded
default. Exit codes: 0 figures shown, 1 no figures (or no store) there, 2 bad usage.

Tenants appear as the store holds them: by their keyed label
(:func:`promptcache.pseudonym.tenant_label`), never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from promptcache.telemetry.aggregate import PersistedStats, StatsRecord, dedupe, read_stats

__all__ = ["register", "summarize"]

DIMENSIONS = ("tenant", "model", "agent", "entry_type")
_NANO = 1_000_000_000


def summarize(
    records: list[PersistedStats], by: tuple[str, ...] = DIMENSIONS, top: int = 3
) -> list[dict[str, Any]]:
    """The writers' rows summed per ``by`` dimensions, as plain rows (sorted by calls, descending).

    ``hit_rate`` is None where there was no lookup to hit (usage recorded by a plain cache).
    """
    groups: dict[tuple[str, ...], StatsRecord] = {}
    for rec in dedupe(records):
        for row in rec.rows:
            k = tuple(getattr(row, d) for d in by)
            g = groups.get(k)
            if g is None:
                g = groups[k] = StatsRecord(
                    tenant=row.tenant if "tenant" in by else "*",
                    model=row.model if "model" in by else "*",
                    agent=row.agent if "agent" in by else "*",
                    entry_type=row.entry_type if "entry_type" in by else "*",
                )
            g.add(row)
    out = []
    for k, g in sorted(groups.items(), key=lambda kv: (-kv[1].calls - kv[1].usage_calls, kv[0])):
        out.append(
            {
                **dict(zip(by, k, strict=True)),
                "calls": g.calls,
                "hits": g.hits,
                "misses": g.misses,
                "denied": g.denied,
                "stale": g.stale,
                "hit_rate": round(g.hit_rate, 4) if g.hits + g.misses + g.denied else None,
                "input_tokens": g.input_tokens,
                "cache_read_tokens": g.cache_read_tokens,
                "cached_share": round(g.cached_share, 4),
                "cost_usd": g.cost_nusd / _NANO,
                "cost_avoided_usd": g.cost_avoided_nusd / _NANO,
                "top_miss_reasons": [[r, n] for r, n in Counter(g.miss_reasons).most_common(top)],
            }
        )
    return out


def _print(rows: list[dict[str, Any]], by: tuple[str, ...], writers: int) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is an optional nicety: plain lines carry the same figures
        for r in rows:
            print(json.dumps(r))
        return
    table = Table(title=f"promptcache stats ({writers} writer{'s' if writers != 1 else ''})")
    for d in by:
        table.add_column(d)
    for col in ("calls", "hit rate", "cached share", "cost $", "avoided $"):
        table.add_column(col, justify="right")
    table.add_column("top miss reasons")
    for r in rows:
        reasons = "\n".join(f"{n}× {reason}" for reason, n in r["top_miss_reasons"])
        table.add_row(
            *(str(r[d]) or "-" for d in by),
            str(r["calls"]),
            f"{r['hit_rate']:.1%}" if r["hit_rate"] is not None else "-",
            f"{r['cached_share']:.1%}" if r["input_tokens"] else "-",
            f"{r['cost_usd']:.4f}",
            f"{r['cost_avoided_usd']:.4f}",
            reasons,
        )
    Console(width=max(120, Console().width)).print(table)


def _missing_path(spec: str | None) -> str | None:
    """The local directory ``spec`` names when it does not exist (reading must not create a store)."""
    from urllib.parse import unquote, urlsplit

    if spec is None:
        from promptcache.tiers.sqlite import default_cache_dir

        path = str(default_cache_dir())
    else:
        parts = urlsplit(spec)
        scheme = parts.scheme.lower()
        if scheme in ("sqlite", "file"):
            path = unquote(parts.netloc + parts.path)
        elif scheme and len(scheme) > 1:
            return None  # redis://, memory://: nothing on the local disk to check
        else:
            path = spec
    return None if not path or os.path.isdir(path) else path


def _read(spec: str | None, attempts: int = 5) -> list[PersistedStats]:
    """Every writer's record in the store ``spec`` names, the writers' duplicates left out."""
    from promptcache.artifacts.store import open_store
    from promptcache.tiers.base import TierError

    for attempt in range(attempts):
        try:
            store = open_store(spec)
            try:
                return dedupe(read_stats(store))
            finally:
                store.close()
        except TierError:
            # SQLite: a writing app may hold the lock for a moment; a reader waits its turn.
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _cli(args: argparse.Namespace) -> int:
    by = tuple(d.strip() for d in args.by.split(",") if d.strip())
    bad = [d for d in by if d not in DIMENSIONS]
    if bad or not by:
        print(f"promptcache stats: --by takes {', '.join(DIMENSIONS)}", file=sys.stderr)
        return 2
    spec = args.store or os.environ.get("PROMPTCACHE_STORE") or None
    missing = _missing_path(spec)
    if missing is not None:
        where = "--store" if args.store else "$PROMPTCACHE_STORE" if spec else "the default store"
        print(
            f"promptcache stats: no store at {missing} ({where}); pass the directory your app's "
            "PromptCache(store=...) uses",
            file=sys.stderr,
        )
        return 1
    try:
        records = _read(spec)
    except (ValueError, TypeError) as exc:
        print(f"promptcache stats: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unreachable Redis, an unreadable file: one line, not a traceback
        print(f"promptcache stats: cannot read the store {spec or '(default)'}: {exc}", file=sys.stderr)
        return 1
    rows = summarize(records, by, top=args.top)
    if args.json:
        print(json.dumps({"writers": len(records), "by": list(by), "rows": rows}, indent=2))
    elif rows:
        _print(rows, by, len(records))
    if not rows:
        print(
            "promptcache stats: no figures in this store yet (a PromptCache using it writes them "
            "every few seconds and at exit, unless PROMPTCACHE_RECORD_STATS=0)",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: Any) -> None:
    """Add the ``stats`` subcommand to the ``promptcache`` parser."""
    p = sub.add_parser(
        "stats",
        help="hit rate, cached share, cost avoided and top miss reasons from the store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", default=None, help="store URL or directory (default: $PROMPTCACHE_STORE)")
    p.add_argument(
        "--by",
        default=",".join(DIMENSIONS),
        help=f"dimensions to group by, comma-separated: {', '.join(DIMENSIONS)} (default: all)",
    )
    p.add_argument("--top", type=int, default=3, help="miss reasons shown per row (default: 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cli)
