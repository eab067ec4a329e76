"""``CacheStats``: the running aggregate of every call a ``PromptCache`` observed, per tenant and model.

Every framework integration feeds the same recorder (``StatsRecorder.record``), so a user sees
one set of figures whichever framework made the call. Until ``PromptCache.stats()`` exists,
reach a cache's recorder with :func:`recorder_for`:

>>> from promptcache import PromptCache
>>> from promptcache.usage import CacheUsage
>>> cache = PromptCache()
>>> rec = recorder_for(cache)
>>> rec.record("acme", CacheUsage(provider="openai", model="gpt-4o", input_tokens=1420,
...                               cache_read_tokens=1280, output_tokens=100))
>>> s = rec.snapshot()
>>> (s.total.calls, s.total.cache_read_tokens, s.get("acme", "gpt-4o").input_tokens)
(1, 1280, 1420)
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.usage import CacheUsage

__all__ = ["CacheStats", "StatsRecorder", "StatsRow", "recorder_for"]

_NANO = 1_000_000_000


class StatsRow(BaseModel):
    """Aggregate figures of one (tenant, model) pair, or of everything (``total``)."""

    model_config = ConfigDict(frozen=True)

    tenant: str | None = None
    model: str | None = None
    calls: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    unpriced_calls: int = Field(default=0, description="calls whose model has no catalog price")

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens read from the provider's cache."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0


class CacheStats(BaseModel):
    """A snapshot of a recorder: one row per (tenant, model) and the total."""

    model_config = ConfigDict(frozen=True)

    rows: list[StatsRow] = Field(default_factory=list)
    total: StatsRow = Field(default_factory=StatsRow)

    def get(self, tenant: str, model: str | None) -> StatsRow:
        """The row of ``tenant`` on ``model`` (an empty row when there is none)."""
        for r in self.rows:
            if r.tenant == tenant and r.model == model:
                return r
        return StatsRow(tenant=tenant, model=model)

    def for_tenant(self, tenant: str) -> StatsRow:
        """Every model of ``tenant`` added up."""
        return _sum([r for r in self.rows if r.tenant == tenant], tenant=tenant, model=None)


class _Acc:
    """Mutable counters of one row; money in nano-USD so the totals are exact."""

    __slots__ = ("calls", "cost", "in_", "out", "read", "saved", "unpriced", "write")

    def __init__(self) -> None:
        self.calls = self.in_ = self.read = self.write = self.out = self.cost = self.saved = 0
        self.unpriced = 0

    def row(self, tenant: str | None, model: str | None) -> StatsRow:
        return StatsRow(
            tenant=tenant,
            model=model,
            calls=self.calls,
            input_tokens=self.in_,
            cache_read_tokens=self.read,
            cache_write_tokens=self.write,
            output_tokens=self.out,
            cost_usd=self.cost / _NANO,
            cost_avoided_usd=self.saved / _NANO,
            unpriced_calls=self.unpriced,
        )


def _sum(rows: list[StatsRow], *, tenant: str | None, model: str | None) -> StatsRow:
    return StatsRow(
        tenant=tenant,
        model=model,
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        cache_read_tokens=sum(r.cache_read_tokens for r in rows),
        cache_write_tokens=sum(r.cache_write_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
        cost_avoided_usd=sum(r.cost_avoided_usd for r in rows),
        unpriced_calls=sum(r.unpriced_calls for r in rows),
    )


class StatsRecorder:
    """Thread-safe running totals per (tenant, model). Cheap to call on every model call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str | None], _Acc] = {}

    def record(self, tenant: str, usage: CacheUsage, *, figures: CallFigures | None = None) -> None:
        """Add one provider call's ``usage`` under ``tenant`` (priced with the packaged catalog).

        ``figures``: the call's figures when the caller already priced ``usage`` with
        :func:`~promptcache.metrics.figures_from_usage` (pricing is the costly part).
        """
        # Pricing happens outside the lock: it is the slow part and needs no shared state.
        f = figures if figures is not None else figures_from_usage(usage, call_id="", tenant=tenant)
        key = (tenant, usage.model)
        with self._lock:
            acc = self._rows.get(key)
            if acc is None:
                acc = self._rows[key] = _Acc()
            acc.calls += 1
            acc.in_ += f.input_tokens
            acc.read += f.cache_read_tokens
            acc.write += f.cache_write_tokens
            acc.out += f.output_tokens
            acc.cost += f.cost_nusd
            acc.saved += f.cost_avoided_nusd
            acc.unpriced += 0 if f.priced else 1

    def snapshot(self) -> CacheStats:
        """The figures so far (a consistent copy; recording may go on meanwhile)."""
        with self._lock:
            rows = [acc.row(t, m) for (t, m), acc in sorted(self._rows.items(), key=_row_order)]
        return CacheStats(rows=rows, total=_sum(rows, tenant=None, model=None))

    def reset(self) -> None:
        """Forget every figure (tests, or a new reporting period)."""
        with self._lock:
            self._rows.clear()


def _row_order(item: tuple[tuple[str, str | None], Any]) -> tuple[str, str]:
    (tenant, model), _ = item
    return (tenant, model or "")


_recorders: weakref.WeakKeyDictionary[Any, StatsRecorder] = weakref.WeakKeyDictionary()
_recorders_lock = threading.Lock()


def recorder_for(cache: Any) -> StatsRecorder:
    """The recorder attached to ``cache`` (a ``PromptCache``), created on first use.

    A ``PromptCache`` holds its own (it is read on every model call: an attribute, where a
    weak-keyed lookup makes a weak reference per call); any other object's is keyed weakly,
    so a recorder lives exactly as long as its cache.
    """
    own = getattr(cache, "_stats", None)
    if type(own) is StatsRecorder:
        return own
    rec = _recorders.get(cache)
    if rec is None:
        with _recorders_lock:
            rec = _recorders.get(cache)
            if rec is None:
                rec = _recorders[cache] = StatsRecorder()
    return rec
