"""Per-call cache figures and the reducer that merges them, for framework state channels.

A LangGraph channel (and the ``cache_metrics`` channel the LangChain agent middleware adds)
holds a :class:`CacheMetrics`: a set of per-call records keyed by a call id (the LangChain run
id of the model call, or another id unique to the call). The reducer, :func:`merge_cache_metrics`,
is a set union, so it is

* commutative and associative: parallel branches can write in any order;
* idempotent: a subgraph that hands its whole channel back to its parent, or a node-cache replay
  that re-emits a node's earlier writes, adds nothing that is already there (no double counting).

Totals (``calls``, ``input_tokens``, ``hit_rate``, ``cost_usd`` ...) are computed from the
records, never stored, so they cannot drift from them. Money is kept as integer nano-dollars
so that sums are exact whatever the merge order (float addition is not associative).

>>> from promptcache.usage import CacheUsage
>>> u = CacheUsage(provider="openai", model="gpt-4o", input_tokens=1420, cache_read_tokens=1280,
...                output_tokens=100)
>>> m = CacheMetrics.from_usage(u, call_id="run-1", tenant="acme")
>>> both = merge_cache_metrics(m, m)
>>> (both.calls, both.input_tokens, both.cache_read_tokens, round(both.hit_rate, 3))
(1, 1420, 1280, 0.901)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptcache.pricing import cost
from promptcache.usage import CacheUsage

__all__ = ["CacheMetrics", "CallFigures", "figures_from_usage", "merge_cache_metrics"]

CallKind = Literal["model", "tool", "retrieval"]
_NANO = 1_000_000_000


class CallFigures(BaseModel):
    """What one call did: tokens, provider cache reads/writes, cost and cost avoided.

    ``local_hit`` marks a call served from promptcache's own cache (a tool output, a retrieval
    result, a stored response): no provider tokens are counted for it. ``priced`` is false when
    the catalog has no price for the model; its cost fields are then zero, not guessed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str
    kind: CallKind = "model"
    tenant: str | None = None
    provider: str | None = None
    model: str | None = None
    input_tokens: int = Field(default=0, ge=0, description="every prompt token, cached or not")
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_nusd: int = Field(default=0, description="cost in nano-USD (exact under any merge order)")
    cost_avoided_nusd: int = Field(
        default=0, description="may be negative: a write premium not yet paid back"
    )
    priced: bool = False
    local_hit: bool = False

    def _order_key(self) -> str:
        # A total order on records, used only when two different records claim the same id
        # (which a correct caller never produces); picking the max keeps the merge a join.
        return self.model_dump_json()


def figures_from_usage(
    usage: CacheUsage,
    *,
    call_id: str,
    tenant: str | None = None,
    kind: CallKind = "model",
    local_hit: bool = False,
) -> CallFigures:
    """Price ``usage`` with the packaged catalog and return it as one call's figures.

    A model the catalog does not know (or usage it cannot price) gives ``priced=False`` and
    zero cost: the token figures are still exact.
    """
    cost_n = avoided_n = 0
    priced = False
    if usage.model:
        try:
            c = cost(usage)
        except (KeyError, ValueError):
            pass
        else:
            cost_n = round(c.total * _NANO)
            avoided_n = round(c.cost_avoided * _NANO)
            priced = True
    return CallFigures(
        call_id=call_id,
        kind=kind,
        tenant=tenant,
        provider=usage.provider,
        model=usage.model,
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        cost_nusd=cost_n,
        cost_avoided_nusd=avoided_n,
        priced=priced,
        local_hit=local_hit,
    )


class CacheMetrics(BaseModel):
    """The cache figures of a run: per-call records and totals computed from them.

    ``CacheMetrics()`` is the empty value (what a state channel starts from).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    records: dict[str, CallFigures] = Field(default_factory=dict)

    @classmethod
    def from_usage(
        cls,
        usage: CacheUsage,
        *,
        call_id: str,
        tenant: str | None = None,
        kind: CallKind = "model",
        local_hit: bool = False,
    ) -> CacheMetrics:
        """Metrics holding one call: ``usage`` priced by the catalog."""
        f = figures_from_usage(usage, call_id=call_id, tenant=tenant, kind=kind, local_hit=local_hit)
        return cls(records={call_id: f})

    @classmethod
    def of(cls, *figures: CallFigures) -> CacheMetrics:
        """Metrics holding ``figures`` (merged, so duplicates collapse)."""
        out = cls()
        for f in figures:
            out = merge_cache_metrics(out, cls(records={f.call_id: f}))
        return out

    def _model_calls(self) -> list[CallFigures]:
        return [r for r in self.records.values() if r.kind == "model" and not r.local_hit]

    @property
    def calls(self) -> int:
        """Model calls that reached a provider."""
        return len(self._model_calls())

    @property
    def local_hits(self) -> int:
        """Calls served from promptcache's own caches (tools, retrieval, responses)."""
        return sum(1 for r in self.records.values() if r.local_hit)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens sent to providers, cached or not."""
        return sum(r.input_tokens for r in self._model_calls())

    @property
    def cache_read_tokens(self) -> int:
        """Prompt tokens the providers served from their prompt caches."""
        return sum(r.cache_read_tokens for r in self._model_calls())

    @property
    def cache_write_tokens(self) -> int:
        """Prompt tokens the providers wrote to their prompt caches."""
        return sum(r.cache_write_tokens for r in self._model_calls())

    @property
    def output_tokens(self) -> int:
        """Output tokens billed by providers."""
        return sum(r.output_tokens for r in self._model_calls())

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens read from a provider cache (0.0 with no prompt tokens)."""
        n = self.input_tokens
        return self.cache_read_tokens / n if n else 0.0

    @property
    def cost_usd(self) -> float:
        """What the priced calls cost."""
        return sum(r.cost_nusd for r in self.records.values()) / _NANO

    @property
    def cost_avoided_usd(self) -> float:
        """What the priced calls would have cost more without any caching (negative: not yet paid back)."""
        return sum(r.cost_avoided_nusd for r in self.records.values()) / _NANO

    @property
    def unpriced_calls(self) -> int:
        """Model calls whose model the price catalog does not know (their cost is not counted)."""
        return sum(1 for r in self._model_calls() if not r.priced)

    def summary(self) -> dict[str, Any]:
        """The totals as a plain dict (for logs, JSON output and reports)."""
        return {
            "calls": self.calls,
            "local_hits": self.local_hits,
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "hit_rate": self.hit_rate,
            "cost_usd": self.cost_usd,
            "cost_avoided_usd": self.cost_avoided_usd,
            "unpriced_calls": self.unpriced_calls,
        }


def _coerce(value: CacheMetrics | Mapping[str, Any] | None) -> CacheMetrics:
    if value is None:
        return CacheMetrics()
    if isinstance(value, CacheMetrics):
        return value
    if isinstance(value, Mapping):
        # A checkpoint or a node may hand the channel back as plain data.
        return CacheMetrics.model_validate(value)
    raise TypeError(f"cache_metrics: expected CacheMetrics, a mapping or None, got {type(value).__name__}")


def merge_cache_metrics(
    left: CacheMetrics | Mapping[str, Any] | None, right: CacheMetrics | Mapping[str, Any] | None
) -> CacheMetrics:
    """The reducer of a ``cache_metrics`` channel: the union of both sides' call records.

    Commutative, associative and idempotent (see the module docstring). Two different records
    under one id (a caller bug) resolve to the same one whichever side they come from.
    """
    a, b = _coerce(left), _coerce(right)
    if not b.records:
        return a
    if not a.records:
        return b
    merged = dict(a.records)
    for k, r in b.records.items():
        mine = merged.get(k)
        if mine is None or (mine != r and r._order_key() > mine._order_key()):
            merged[k] = r
    return CacheMetrics(records=merged)
