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

The value is plain data to anything that stores it (a checkpoint holds a JSON-able map):

>>> import json
>>> json.loads(json.dumps(both)) == both
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import core_schema

from promptcache.pricing import cost_nusd
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
            cost_n, avoided_n = cost_nusd(usage)
        except (KeyError, ValueError):
            pass
        else:
            priced = True
    n_in, n_read, n_write, n_out = (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
    )
    values = {
        "call_id": call_id,
        "kind": kind,
        "tenant": tenant,
        "provider": usage.provider,
        "model": usage.model,
        "input_tokens": n_in,
        "cache_read_tokens": n_read,
        "cache_write_tokens": n_write,
        "output_tokens": n_out,
        "cost_nusd": cost_n,
        "cost_avoided_nusd": avoided_n,
        "priced": priced,
        "local_hit": local_hit,
    }
    return CallFigures.model_validate(values)


_KINDS = frozenset(("model", "tool", "retrieval"))


def _plain(f: CallFigures) -> dict[str, Any]:
    # Every CallFigures field is a JSON scalar, so its field dict *is* the JSON form;
    # model_dump cost a visible share of each recorded call. Subclasses take the long way.
    if type(f) is CallFigures:
        return dict(f.__dict__)
    return f.model_dump(mode="json")


class CacheMetrics(dict[str, Any]):
    """The cache figures of a run: per-call records and totals computed from them.

    A read-only ``dict`` holding plain JSON data, ``{"records": {call_id: {field: value}}}``:
    that is what a LangGraph checkpoint or node cache stores and reads back (as a plain map,
    so LangGraph never has to deserialize a promptcache class: no "unregistered type" warning,
    nothing for ``LANGGRAPH_STRICT_MSGPACK`` to block). The typed view is :attr:`records`
    (:class:`CallFigures` by call id); totals are properties. A value read back from a
    checkpoint is a plain dict: ``CacheMetrics.model_validate(value)`` gives the typed form.

    ``CacheMetrics()`` is the empty value (what a state channel starts from).
    """

    __slots__ = ("_figures",)

    def __init__(self, records: Mapping[str, CallFigures | Mapping[str, Any]] | None = None) -> None:
        """Metrics holding ``records`` (figures or their plain form, by call id), validated."""
        if not records:
            # The empty value: LangGraph makes one per channel instance of every run (its initial value).
            dict.__init__(self, records={})
            self._figures = {}
            return
        figures: dict[str, CallFigures] = {}
        for call_id, r in (records or {}).items():
            figures[str(call_id)] = r if isinstance(r, CallFigures) else CallFigures.model_validate(r)
        super().__init__(records={k: _plain(f) for k, f in figures.items()})
        self._figures = figures

    @classmethod
    def of_call(cls, figures: CallFigures) -> CacheMetrics:
        """Metrics holding the one call ``figures`` (what an integration adds per model call).

        ``CacheMetrics({figures.call_id: figures})``; the figures are already validated, so they
        are not checked again.
        """
        return cls._of_figures({figures.call_id: figures}, {figures.call_id: _plain(figures)})

    @classmethod
    def _of_figures(cls, figures: dict[str, CallFigures], plain: dict[str, dict[str, Any]]) -> CacheMetrics:
        # The merge path: records already validated, no second validation per merge.
        out = cls.__new__(cls)
        dict.__init__(out, records=plain)
        out._figures = figures
        return out

    # read-only: a channel value is shared by every reader of the state; the reducer's
    # algebra (and node-cache replays) rely on no one editing it in place.
    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("CacheMetrics is read-only: merge with merge_cache_metrics()")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __copy__(self) -> CacheMetrics:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CacheMetrics:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.model_dump(),))

    def __repr__(self) -> str:
        return f"CacheMetrics(calls={self.calls}, local_hits={self.local_hits}, records={len(self._figures)})"

    @property
    def records(self) -> dict[str, CallFigures]:
        """The per-call figures by call id (a copy: editing it changes nothing)."""
        return dict(self._figures)

    @classmethod
    def model_validate(cls, value: Any) -> CacheMetrics:
        """The typed form of ``value``: a ``CacheMetrics``, its plain form (a checkpoint's), or None."""
        return _coerce(value)

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        """The plain form, ``{"records": {call_id: {field: value}}}`` (a deep copy)."""
        return {"records": {k: dict(v) for k, v in self["records"].items()}}

    def model_dump_json(self) -> str:
        """The plain form as JSON text."""
        return json.dumps(self.model_dump(), sort_keys=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        # Lets LangGraph/LangChain build pydantic models and JSON schemas of a state that holds
        # the channel: validated through _coerce, serialized as the plain form.
        return core_schema.no_info_plain_validator_function(
            _coerce,
            json_schema_input_schema=core_schema.dict_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.model_dump()),
        )

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
        return [r for r in self._figures.values() if r.kind == "model" and not r.local_hit]

    @property
    def calls(self) -> int:
        """Model calls that reached a provider."""
        return len(self._model_calls())

    @property
    def local_hits(self) -> int:
        """Calls served from promptcache's own caches (tools, retrieval, responses)."""
        return sum(1 for r in self._figures.values() if r.local_hit)

    @property
    def tool_calls(self) -> int:
        """Tool calls recorded (served from cache or run)."""
        return sum(1 for r in self._figures.values() if r.kind == "tool")

    @property
    def retrievals(self) -> int:
        """Retrievals recorded (served from cache or run)."""
        return sum(1 for r in self._figures.values() if r.kind == "retrieval")

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
        return sum(r.cost_nusd for r in self._figures.values()) / _NANO

    @property
    def cost_avoided_usd(self) -> float:
        """What the priced calls would have cost more without any caching (negative: not yet paid back)."""
        return sum(r.cost_avoided_nusd for r in self._figures.values()) / _NANO

    @property
    def unpriced_calls(self) -> int:
        """Model calls whose model the price catalog does not know (their cost is not counted)."""
        return sum(1 for r in self._model_calls() if not r.priced)

    def summary(self) -> dict[str, Any]:
        """The totals as a plain dict (for logs, JSON output and reports)."""
        return {
            "calls": self.calls,
            "local_hits": self.local_hits,
            "tool_calls": self.tool_calls,
            "retrievals": self.retrievals,
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "hit_rate": self.hit_rate,
            "cost_usd": self.cost_usd,
            "cost_avoided_usd": self.cost_avoided_usd,
            "unpriced_calls": self.unpriced_calls,
        }


def _rebuild(plain: Mapping[str, Any]) -> CacheMetrics:
    # pickle/copy support: a read-only dict cannot be rebuilt item by item.
    return _coerce(plain)


def _coerce(value: CacheMetrics | Mapping[str, Any] | None) -> CacheMetrics:
    if value is None:
        return CacheMetrics()
    if isinstance(value, CacheMetrics):
        return value
    if isinstance(value, Mapping):
        # A checkpoint, a node-cache replay or a node may hand the channel back as plain data.
        extra = set(value) - {"records"}
        if extra:
            raise ValueError(f"cache_metrics: unexpected keys {sorted(extra)} (expected 'records')")
        records = value.get("records") or {}
        if not isinstance(records, Mapping):
            raise TypeError("cache_metrics: 'records' must be a mapping of call id to figures")
        return CacheMetrics(records=records)
    raise TypeError(f"cache_metrics: expected CacheMetrics, a mapping or None, got {type(value).__name__}")


def _order_key(plain: Mapping[str, Any]) -> str:
    # A total order on records, used only when two different records claim the same id
    # (which a correct caller never produces); picking the max keeps the merge a join.
    return json.dumps(plain, sort_keys=True)


def merge_cache_metrics(
    left: CacheMetrics | Mapping[str, Any] | None, right: CacheMetrics | Mapping[str, Any] | None
) -> CacheMetrics:
    """The reducer of a ``cache_metrics`` channel: the union of both sides' call records.

    Commutative, associative and idempotent (see the module docstring). Two different records
    under one id (a caller bug) resolve to the same one whichever side they come from. Either
    side may be the plain form a checkpoint holds; the result is a :class:`CacheMetrics`, which
    is itself a plain ``dict`` to LangGraph's serializer.
    """
    # Both sides already typed (the usual channel update) need no coercion.
    a = left if type(left) is CacheMetrics else _coerce(left)
    b = right if type(right) is CacheMetrics else _coerce(right)
    if not b._figures:
        return a
    if not a._figures:
        return b
    figures = dict(a._figures)
    plain: dict[str, dict[str, Any]] = dict(a["records"])
    for k, r in b._figures.items():
        theirs = b["records"][k]
        mine = plain.get(k)
        if mine is None or (mine != theirs and _order_key(theirs) > _order_key(mine)):
            figures[k] = r
            plain[k] = theirs
    return CacheMetrics._of_figures(figures, plain)
