"""The figures of a framework step that does not simply run once: here, one served again.

A framework that stores a step's output and serves it again (LangGraph's node cache replays a
node's writes, ``cache_metrics`` included) would otherwise report the stored calls' provider
tokens and cost once more in a run that made no provider call at all. :func:`replayed` restates
such figures as what the replay was: one local hit per stored call, costing nothing, having
avoided what the call would cost without any caching (the stored call's cost plus what its own
caching avoided). The integration decides when a value is a replay; this module only restates it.

>>> from promptcache.usage import CacheUsage
>>> from promptcache.figures import CacheMetrics, figures_from_usage
>>> u = CacheUsage(provider="openai", model="gpt-4o", input_tokens=1260, output_tokens=3)
>>> stored = CacheMetrics.of_call(figures_from_usage(u, call_id="c1", tenant="acme"))
>>> again = replayed(stored, replay_id="r1")
>>> (again.calls, again.local_hits, again.cost_usd, again.cost_avoided_usd == stored.cost_usd)
(0, 1, 0.0, True)
>>> list(again.records)
['r1:c1']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptcache.figures import CacheMetrics, CallFigures

__all__ = ["replayed", "replayed_figures"]


def replayed_figures(f: CallFigures, *, replay_id: str) -> CallFigures:
    """``f`` served again: a local hit of the same kind, tenant and model, under a new id.

    The id is ``f"{replay_id}:{f.call_id}"``: one record per stored call and replay, so a replay
    adds records next to the stored ones instead of passing for them (the channel's reducer is a
    union by id), and merging the same replay twice still counts it once.
    """
    # A stored local hit avoided what it avoided; a stored provider call, all it cost uncached.
    avoided = f.cost_avoided_nusd if f.local_hit else f.cost_nusd + f.cost_avoided_nusd
    return CallFigures(
        call_id=f"{replay_id}:{f.call_id}",
        kind=f.kind,
        tenant=f.tenant,
        provider=f.provider,
        model=f.model,
        cost_nusd=0,
        cost_avoided_nusd=avoided,
        priced=f.priced,
        local_hit=True,
    )


def replayed(metrics: CacheMetrics | Mapping[str, Any] | None, *, replay_id: str) -> CacheMetrics:
    """Every record of ``metrics`` (typed, or the plain form a cache stores) as served again."""
    typed = CacheMetrics.model_validate(metrics)
    out = [replayed_figures(f, replay_id=replay_id) for f in typed.records.values()]
    return CacheMetrics({f.call_id: f for f in out})
