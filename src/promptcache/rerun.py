"""The figures of a framework step that does not simply run once: served again, or run again.

Two cases, both about counting every billed call exactly once:

* **Served again.** A framework that stores a step's output and serves it again (LangGraph's
  node cache replays a node's writes, ``cache_metrics`` included) would otherwise report the
  stored calls' provider tokens and cost once more in a run that made no provider call at all.
  :func:`replayed` restates such figures as what the replay was: one local hit per stored call,
  costing nothing, having avoided what the call would cost without any caching (the stored
  call's cost plus what its own caching avoided). The integration decides when a value is a
  replay; this module only restates it.
* **Run again.** A step that stops before it finishes (LangGraph's ``interrupt()``, or an error)
  is run again from its start when the run resumes, and the framework keeps none of the
  stopped attempt's output: the figures of the calls that attempt already paid for would be
  lost. :func:`keep_pending` keeps them in the cache's store (L1, and L2 when configured, so a
  resume in another process finds them) under the step's durable identity, and
  :func:`take_pending` hands them back when the step runs again. Only figures are stored:
  counts, tokens and money, no prompt text.

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

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from promptcache.engine import PromptCache
from promptcache.figures import CacheMetrics, CallFigures, Degradation, merge_cache_metrics
from promptcache.llm_bridge import HINT_REJECTIONS

__all__ = [
    "PENDING_ENTRY_TYPE",
    "PENDING_TTL_S",
    "akeep_pending",
    "atake_pending",
    "keep_pending",
    "replayed",
    "replayed_figures",
    "take_pending",
]

log = logging.getLogger(__name__)

PENDING_ENTRY_TYPE = "pending_figures"
"""The store entry type of a stopped step's figures."""

PENDING_TTL_S = 7 * 24 * 3600
"""How long a stopped step's figures wait for the step to run again (a week: a human approval
behind an ``interrupt()`` may take days); a step never resumed leaves nothing behind after that."""


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


# run again ------------------------------------------------------------------------------------


def _pending_key(scope: str) -> str:
    # The step's identity is hashed: a thread id may be anything the app chose.
    return "pending-figures:" + hashlib.sha256(scope.encode("utf-8", "surrogatepass")).hexdigest()


_warned = False


def _absorbed(what: str, exc: BaseException) -> None:
    # A store fault loses these figures, never the user's call (design: failure behaviour):
    # counted every time, logged once per process (a broken store would fail every node run).
    global _warned
    HINT_REJECTIONS[Degradation.TIER_SKIPPED.value] += 1
    if not _warned:
        _warned = True
        log.warning(
            "promptcache: could not %s a stopped step's figures (%s); they are not counted",
            what,
            type(exc).__name__,
        )


def _decode(payload: bytes | None) -> CacheMetrics:
    if not payload:
        return CacheMetrics()
    return CacheMetrics.model_validate(orjson.loads(payload))


def keep_pending(cache: PromptCache, scope: str, tenant: str, metrics: CacheMetrics) -> None:
    """Keep ``metrics``, the figures of step ``scope`` that stopped before finishing, for
    :func:`take_pending` (merged with any kept before: a step may stop more than once).

    ``scope`` names the step durably: the same string when it runs again (for LangGraph, the
    thread id and the task's checkpoint namespace). Written through to the shared tier before
    returning, so a resume in another process finds them.
    """
    if not metrics.records:
        return
    key = _pending_key(scope)
    try:
        store = cache.store
        found = store.get(key, tenant=tenant)
        merged = merge_cache_metrics(_decode(found.payload if found else None), metrics)
        payload = orjson.dumps(merged.model_dump())
        store.put(key, payload, tenant=tenant, entry_type=PENDING_ENTRY_TYPE, ttl_s=PENDING_TTL_S)
        store.flush()
    except Exception as exc:
        _absorbed("keep", exc)


def take_pending(cache: PromptCache, scope: str, tenant: str) -> CacheMetrics:
    """The figures kept for step ``scope`` (empty if none), removed from the store."""
    key = _pending_key(scope)
    try:
        store = cache.store
        found = store.get(key, tenant=tenant)
        if found is None:
            return CacheMetrics()
        store.delete(key)
        return _decode(found.payload)
    except Exception as exc:
        _absorbed("read", exc)
        return CacheMetrics()


async def akeep_pending(cache: PromptCache, scope: str, tenant: str, metrics: CacheMetrics) -> None:
    """Async :func:`keep_pending`."""
    if not metrics.records:
        return
    key = _pending_key(scope)
    try:
        store = cache.store
        found = await store.aget(key, tenant=tenant)
        merged = merge_cache_metrics(_decode(found.payload if found else None), metrics)
        payload = orjson.dumps(merged.model_dump())
        await store.aput(key, payload, tenant=tenant, entry_type=PENDING_ENTRY_TYPE, ttl_s=PENDING_TTL_S)
        await asyncio.to_thread(store.flush)
    except Exception as exc:
        _absorbed("keep", exc)


async def atake_pending(cache: PromptCache, scope: str, tenant: str) -> CacheMetrics:
    """Async :func:`take_pending`."""
    key = _pending_key(scope)
    try:
        store = cache.store
        found = await store.aget(key, tenant=tenant)
        if found is None:
            return CacheMetrics()
        await store.adelete(key)
        return _decode(found.payload)
    except Exception as exc:
        _absorbed("read", exc)
        return CacheMetrics()
