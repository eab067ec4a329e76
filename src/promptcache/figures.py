"""One figures model: what each call did, and what many calls add up to.

Three shapes of the same figures, one module:

* :class:`CallFigures` — one call: tokens (prompt, cache read, cache write by TTL, output),
  cost and cost avoided in exact nano-USD, whether the model was priced, and whether the call
  was served from promptcache's own cache. :func:`figures_from_usage` prices a provider's
  :class:`~promptcache.usage.CacheUsage` into one.
* :class:`Totals` — figures added up: counts, tokens, money and reasons. Its :meth:`Totals.merge`
  is associative and commutative (integers and counters only, so any merge order gives the same
  sums). ``cache.stats()`` rows, the ``promptcache stats`` record in the store and the totals of
  a ``cache_metrics`` channel are all ``Totals``.
* :class:`CacheMetrics` — a set of per-call records keyed by call id, the value of a LangGraph
  ``cache_metrics`` channel; :func:`merge_cache_metrics` is its reducer (a set union, so also
  idempotent: a replayed node adds nothing twice). Its totals are a ``Totals``.

Reasons are enums (:class:`PrefixMissReason`, :class:`ProviderMissReason`, :class:`LookupReason`,
:class:`Degradation`):
telemetry labels and aggregates count them by value, never by matching free text.

>>> from promptcache.usage import CacheUsage
>>> u = CacheUsage(provider="openai", model="gpt-4o", input_tokens=1420, cache_read_tokens=1280,
...                output_tokens=100)
>>> m = CacheMetrics.from_usage(u, call_id="run-1", tenant="acme")
>>> both = merge_cache_metrics(m, m)
>>> (both.calls, both.input_tokens, both.cache_read_tokens, round(both.hit_rate, 3))
(1, 1420, 1280, 0.901)

The channel value is plain data to anything that stores it (a checkpoint holds a JSON-able map),
and a value read back from a checkpoint validates as is:

>>> import json
>>> back = json.loads(json.dumps(both))
>>> back == both and CacheMetrics.model_validate(back).summary() == both.summary()
True
>>> t = both.totals
>>> Totals.model_validate(t.model_dump()) == t
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import core_schema

from promptcache.pricing import cost_nusd
from promptcache.usage import CacheUsage

__all__ = [
    "DENIALS",
    "CacheMetrics",
    "CallFigures",
    "CallKind",
    "Degradation",
    "LookupReason",
    "PrefixMissReason",
    "ProviderMissReason",
    "Totals",
    "figures_from_usage",
    "merge_cache_metrics",
]

NANO = 1_000_000_000
"""Nano-USD per USD: money is kept in integer nano-USD so that sums are exact in any order."""


class PrefixMissReason(StrEnum):
    """Why a request's cacheable prefix differs from its family's previous one.

    The values are :data:`promptcache.explain.Cause`'s, plus ``first_request``.
    """

    FIRST_REQUEST = "first_request"
    KEY_ORDER = "key_order"
    TOOL_ORDER = "tool_order"
    WHITESPACE_OR_UNICODE = "whitespace_or_unicode"
    VOLATILE_VALUE = "volatile_value"
    LEARNED_VOLATILE = "learned_volatile"
    CONTENT = "content"
    ADDED = "added"
    REMOVED = "removed"
    HISTORY_REWRITTEN = "history_rewritten"


class ProviderMissReason(StrEnum):
    """Why the provider itself says a request could not reuse its conversation's previous prefix.

    Anthropic cache diagnostics' ``cache_miss_reason.type`` values (anthropic SDK 0.125
    ``BetaCacheMiss*``; platform.claude.com/docs/en/build-with-claude/cache-diagnostics, read
    2026-12-07) and OpenAI's ``prompt_cache_diagnostics`` verdicts on a Responses request
    (developers.openai.com/api/docs/guides/prompt-caching/diagnostics, read 2026-12-07; mapped by
    :func:`promptcache.providers.openai_diagnostics.miss_diagnosis`). A meaning both providers
    share has one member: ``model_changed``, ``tools_changed``, ``unavailable``, and
    ``previous_message_not_found`` (the baseline response is unknown to the provider: Anthropic's
    ``previous_message_not_found``, OpenAI's ``comparison_response_not_found``). Anthropic tells a
    changed ``system`` from changed ``messages``; OpenAI reports either as ``input_changed``.
    Counted beside promptcache's own :class:`PrefixMissReason` values, which it never shares a
    value with.
    """

    MODEL_CHANGED = "model_changed"
    SYSTEM_CHANGED = "system_changed"
    TOOLS_CHANGED = "tools_changed"
    MESSAGES_CHANGED = "messages_changed"
    PREVIOUS_MESSAGE_NOT_FOUND = "previous_message_not_found"
    UNAVAILABLE = "unavailable"
    # OpenAI only (the guide's "Fix a cache miss" table)
    PROMPT_CACHE_KEY_CHANGED = "prompt_cache_key_changed"
    SERVICE_TIER_CHANGED = "service_tier_changed"
    TEXT_FORMAT_CHANGED = "text_format_changed"
    REASONING_EFFORT_CHANGED = "reasoning_effort_changed"
    VERBOSITY_CHANGED = "verbosity_changed"
    CONTEXT_COMPACTED = "context_compacted"
    INPUT_CHANGED = "input_changed"


class LookupReason(StrEnum):
    """How an artifact-cache call (tool output, retrieval, response) was answered, as a label.

    Every :class:`~promptcache.artifacts.LookupResult` carries one, set by the code that made
    the decision: telemetry, stats and integrations count and compare these values and never
    read the lookup's words. The members in :data:`DENIALS` are calls the policy kept out of the
    cache; the others are hits, misses, values that could not be stored, and faults of the cache
    machinery (the call ran uncached). :attr:`text` is the reason in words.
    """

    HIT = "hit"
    SHARED = "shared"  # a concurrent identical call computed it (single flight)
    STORED = "stored"  # a miss: computed and stored
    UNSERIALIZABLE = "unserializable"  # computed, but the value has no JSON form: not stored
    UNCACHEABLE = "uncacheable"  # the caller declared the result not cacheable (an error result)
    UNREADABLE = "unreadable"  # the entry could not be decoded: recomputed
    POLICY_MISMATCH = "policy_mismatch"  # the entry was admitted by another policy: recomputed
    CACHE_FAULT = "cache_fault"
    STORE_FAILED = "store_failed"
    # denials: the policy kept the call out of the cache
    SIDE_EFFECT = "side_effect"
    INELIGIBLE = "ineligible"
    POLICY_DENIED = "policy_denied"
    SECRET = "secret"
    PII = "pii"
    TENANT_MISSING = "tenant_missing"
    UNKEYABLE = "unkeyable"

    @property
    def denied(self) -> bool:
        """Whether the policy kept this call out of the cache."""
        return self in DENIALS

    @property
    def text(self) -> str:
        """The reason in a few words, for logs, callbacks and ``explain``.

        >>> LookupReason.SIDE_EFFECT.text
        'side effects: never served from cache'
        """
        return _TEXT[self]


DENIALS = frozenset(
    {
        LookupReason.SIDE_EFFECT,
        LookupReason.INELIGIBLE,
        LookupReason.POLICY_DENIED,
        LookupReason.SECRET,
        LookupReason.PII,
        LookupReason.TENANT_MISSING,
        LookupReason.UNKEYABLE,
    }
)
"""The lookup reasons that are policy denials (``promptcache_policy_denials_total``)."""

_TEXT: dict[LookupReason, str] = {
    LookupReason.HIT: "hit",
    LookupReason.SHARED: "hit: computed by a concurrent identical call",
    LookupReason.STORED: "miss: stored",
    LookupReason.UNSERIALIZABLE: "not JSON-serializable: not stored",
    LookupReason.UNCACHEABLE: "result not cacheable: not stored",
    LookupReason.UNREADABLE: "unreadable entry: recomputed",
    LookupReason.POLICY_MISMATCH: "entry admitted by another policy: recomputed",
    LookupReason.CACHE_FAULT: "cache fault: ran uncached",
    LookupReason.STORE_FAILED: "store failed: not cached",
    LookupReason.SIDE_EFFECT: "side effects: never served from cache",
    LookupReason.INELIGIBLE: "not eligible for caching",
    LookupReason.POLICY_DENIED: "denied by policy",
    LookupReason.SECRET: "secret detected: never cached",
    LookupReason.PII: "sensitive data: denied by policy",
    LookupReason.TENANT_MISSING: "no tenant: not cached",
    LookupReason.UNKEYABLE: "no canonical key: not cached",
}


class Degradation(StrEnum):
    """A fault promptcache absorbed instead of failing the call (design: failure behaviour)."""

    TIER_SKIPPED = "tier_skipped"
    HINT_REJECTED = "hint_rejected"
    REQUEST_UNCHANGED = "request_unchanged"  # promptcache failed to prepare it: sent as built
    BODY_TOO_LARGE = "body_too_large"  # above PromptCache(max_body_bytes): passed through unprocessed
    #: a system text or tool schema above PromptCache(max_relocated_values): sent in place, not relocated
    TOO_MANY_VOLATILE = "too_many_volatile"


CallKind = Literal["model", "tool", "retrieval"]


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
    cache_write_tokens_by_ttl: dict[str, int] = Field(
        default_factory=dict, description='part of cache_write_tokens by TTL, e.g. {"1h": 2056}'
    )
    output_tokens: int = Field(default=0, ge=0)
    cost_nusd: int = Field(default=0, description="cost in nano-USD (exact under any merge order)")
    cost_avoided_nusd: int = Field(
        default=0, description="may be negative: a write premium not yet paid back"
    )
    priced: bool = False
    local_hit: bool = False
    provider_miss_reason: ProviderMissReason | None = Field(
        default=None, description="the provider's own miss verdict (Anthropic cache diagnostics), if any"
    )


def figures_from_usage(
    usage: CacheUsage,
    *,
    call_id: str,
    tenant: str | None = None,
    kind: CallKind = "model",
    local_hit: bool = False,
    provider_miss_reason: ProviderMissReason | None = None,
) -> CallFigures:
    """Price ``usage`` with the packaged catalog and return it as one call's figures.

    A model the catalog does not know (or usage it cannot price) gives ``priced=False`` and
    zero cost: the token figures are still exact. ``provider_miss_reason``: the provider's own
    verdict on the call's miss, counted in :attr:`Totals.miss_reasons`.
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
        "cache_write_tokens_by_ttl": dict(usage.cache_write_tokens_by_ttl),
        "output_tokens": n_out,
        "cost_nusd": cost_n,
        "cost_avoided_nusd": avoided_n,
        "priced": priced,
        "local_hit": local_hit,
    }
    if provider_miss_reason is not None:
        values["provider_miss_reason"] = provider_miss_reason
    return CallFigures.model_validate(values)


_SUMMED = (
    "calls",
    "hits",
    "misses",
    "denied",
    "stale",
    "usage_calls",
    "local_hits",
    "tool_calls",
    "retrievals",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "cost_nusd",
    "cost_avoided_nusd",
    "unpriced_calls",
)


def _add_counts(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, n in b.items():
        a[k] = a.get(k, 0) + n


class Totals(BaseModel):
    """Figures added up: what ``cache.stats()`` rows, the store's stats record and a run's totals hold.

    Every field is an integer count, or a map of integer counts, so :meth:`merge` (``+``) is
    associative and commutative and exact in any order; money is in nano-USD (``cost_usd``
    and ``cost_avoided_usd`` read it in dollars). What ``calls`` counts depends on the writer:
    provider calls for a cache's own figures, prepared requests in a telemetry ``prompt_prefix``
    row, artifact calls in an artifact row (``usage_calls`` then counts recorded provider usage).

    A dumped ``Totals`` validates back to an equal one, so a value read back from a checkpoint
    or a store is usable as is:

    >>> t = Totals(calls=1, input_tokens=1420, cache_read_tokens=1280) + Totals(calls=1, input_tokens=100)
    >>> (t.calls, t.input_tokens, round(t.cached_share, 3))
    (2, 1520, 0.842)
    >>> Totals.model_validate(t.model_dump()) == t
    True
    """

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    hits: int = Field(default=0, description="lookups answered from cache (prefix unchanged, for prompts)")
    misses: int = 0
    denied: int = Field(default=0, description="lookups the policy kept out of the cache")
    stale: int = 0
    usage_calls: int = Field(default=0, description="provider calls whose usage was recorded")
    local_hits: int = Field(default=0, description="calls served from promptcache's own caches")
    tool_calls: int = 0
    retrievals: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_tokens_by_ttl: dict[str, int] = Field(default_factory=dict)
    output_tokens: int = 0
    cost_nusd: int = 0
    cost_avoided_nusd: int = 0
    unpriced_calls: int = Field(default=0, description="provider calls whose model has no catalog price")
    miss_reasons: dict[str, int] = Field(
        default_factory=dict,
        description="count by reason (a PrefixMissReason, ProviderMissReason or LookupReason value)",
    )

    @classmethod
    def of_call(cls, f: CallFigures) -> Totals:
        """The totals of the one call ``f``."""
        t = cls()
        t.add_call(f)
        return t

    @classmethod
    def sum(cls, items: Iterable[Totals]) -> Totals:
        """All of ``items`` added up (the empty ``Totals`` for none)."""
        out = cls()
        for t in items:
            out.add(t)
        return out

    def add_call(self, f: CallFigures) -> None:
        """Add one call's figures in place (aggregators call it under their own lock).

        A model call that reached a provider counts in ``calls``, ``usage_calls`` and the
        tokens; a local hit, a tool call or a retrieval only in its own count. Money counts
        for every priced call.
        """
        if f.local_hit:
            self.local_hits += 1
        if f.kind == "tool":
            self.tool_calls += 1
        elif f.kind == "retrieval":
            self.retrievals += 1
        elif not f.local_hit:
            self.calls += 1
            self.usage_calls += 1
            self.input_tokens += f.input_tokens
            self.cache_read_tokens += f.cache_read_tokens
            self.cache_write_tokens += f.cache_write_tokens
            if f.cache_write_tokens_by_ttl:
                _add_counts(self.cache_write_tokens_by_ttl, f.cache_write_tokens_by_ttl)
            self.output_tokens += f.output_tokens
            if not f.priced:
                self.unpriced_calls += 1
            if f.provider_miss_reason is not None:
                self.count_reason(f.provider_miss_reason.value)
        self.cost_nusd += f.cost_nusd
        self.cost_avoided_nusd += f.cost_avoided_nusd

    def count_reason(self, reason: str) -> None:
        """Count one miss or denial under ``reason`` (an enum value) in place."""
        self.miss_reasons[reason] = self.miss_reasons.get(reason, 0) + 1

    def add(self, other: Totals) -> None:
        """Add ``other``'s figures into this one, in place."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        _add_counts(self.cache_write_tokens_by_ttl, other.cache_write_tokens_by_ttl)
        _add_counts(self.miss_reasons, other.miss_reasons)

    def merge(self, other: Totals) -> Totals:
        """``self + other`` as a new ``Totals`` of ``self``'s type (neither side changes)."""
        out = self.model_copy(deep=True)
        out.add(other)
        return out

    def __add__(self, other: Totals) -> Totals:
        return self.merge(other)

    def figures(self) -> Totals:
        """These figures alone, without a subclass's keys (tenant, model, ...)."""
        return Totals.model_validate({name: getattr(self, name) for name in Totals.model_fields})

    @property
    def cached_share(self) -> float:
        """Prompt tokens read from the provider cache over all prompt tokens (0.0 without any)."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0

    @property
    def lookup_hit_rate(self) -> float:
        """Hits over lookups (hits, misses and denials)."""
        n = self.hits + self.misses + self.denied
        return self.hits / n if n else 0.0

    @property
    def cost_usd(self) -> float:
        """What the priced calls cost, in USD."""
        return self.cost_nusd / NANO

    @property
    def cost_avoided_usd(self) -> float:
        """What caching saved the priced calls, in USD (negative: a write premium not yet paid back)."""
        return self.cost_avoided_nusd / NANO


_KINDS = frozenset(("model", "tool", "retrieval"))


def _plain(f: CallFigures) -> dict[str, Any]:
    # An empty TTL breakdown is left out: the plain form of a call stays what checkpoints
    # already hold.
    # Read field by field, in the model's order, as ``f.model_dump(mode="json")`` gives them
    # (every field is plain JSON data but the reason, an enum): a serializer run per call costs
    # several times this.
    out: dict[str, Any] = {
        "call_id": f.call_id,
        "kind": f.kind,
        "tenant": f.tenant,
        "provider": f.provider,
        "model": f.model,
        "input_tokens": f.input_tokens,
        "cache_read_tokens": f.cache_read_tokens,
        "cache_write_tokens": f.cache_write_tokens,
    }
    by_ttl = f.cache_write_tokens_by_ttl
    if by_ttl:
        out["cache_write_tokens_by_ttl"] = dict(by_ttl)
    out["output_tokens"] = f.output_tokens
    out["cost_nusd"] = f.cost_nusd
    out["cost_avoided_nusd"] = f.cost_avoided_nusd
    out["priced"] = f.priced
    out["local_hit"] = f.local_hit
    reason = f.provider_miss_reason
    if reason is not None:
        out["provider_miss_reason"] = reason.value
    return out


class CacheMetrics(dict[str, Any]):
    """The cache figures of a run: per-call records and totals computed from them.

    A read-only ``dict`` holding plain JSON data, ``{"records": {call_id: {field: value}}}``:
    that is what a LangGraph checkpoint or node cache stores and reads back (as a plain map,
    so LangGraph never has to deserialize a promptcache class: no "unregistered type" warning,
    nothing for ``LANGGRAPH_STRICT_MSGPACK`` to block). The typed view is :attr:`records`
    (:class:`CallFigures` by call id); totals are properties. A value read back from a
    checkpoint is a plain dict, which ``CacheMetrics.model_validate(value)`` types; the
    integrations' ``cache_metrics`` channel (``promptcache_langchain.CacheMetricsChannel``) does
    it when a checkpoint is restored, so ``get_state(cfg).values["cache_metrics"]`` is typed.

    ``CacheMetrics()`` is the empty value (what a state channel starts from).
    """

    __slots__ = ("_figures", "_totals")
    _figures: dict[str, CallFigures]
    _totals: Totals | None

    def __init__(self, records: Mapping[str, CallFigures | Mapping[str, Any]] | None = None) -> None:
        """Metrics holding ``records`` (figures or their plain form, by call id), validated."""
        if not records:
            # The empty value: LangGraph makes one per channel instance of every run (its initial value).
            dict.__init__(self, records={})
            self._figures = {}
            self._totals = None
            return
        figures: dict[str, CallFigures] = {}
        for call_id, r in (records or {}).items():
            figures[str(call_id)] = r if isinstance(r, CallFigures) else CallFigures.model_validate(r)
        super().__init__(records={k: _plain(f) for k, f in figures.items()})
        self._figures = figures
        self._totals = None

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
        out._totals = None
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

    def _t(self) -> Totals:
        # Computed once: the value is read-only, so its totals cannot change.
        t = self._totals
        if t is None:
            t = Totals()
            for r in self._figures.values():
                t.add_call(r)
            self._totals = t
        return t

    @property
    def totals(self) -> Totals:
        """The records added up (a copy: editing it changes nothing)."""
        return self._t().model_copy(deep=True)

    @property
    def calls(self) -> int:
        """Model calls that reached a provider."""
        return self._t().calls

    @property
    def local_hits(self) -> int:
        """Calls served from promptcache's own caches (tools, retrieval, responses)."""
        return self._t().local_hits

    @property
    def tool_calls(self) -> int:
        """Tool calls recorded (served from cache or run)."""
        return self._t().tool_calls

    @property
    def retrievals(self) -> int:
        """Retrievals recorded (served from cache or run)."""
        return self._t().retrievals

    @property
    def input_tokens(self) -> int:
        """Prompt tokens sent to providers, cached or not."""
        return self._t().input_tokens

    @property
    def cache_read_tokens(self) -> int:
        """Prompt tokens the providers served from their prompt caches."""
        return self._t().cache_read_tokens

    @property
    def cache_write_tokens(self) -> int:
        """Prompt tokens the providers wrote to their prompt caches."""
        return self._t().cache_write_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens billed by providers."""
        return self._t().output_tokens

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens read from a provider cache (0.0 with no prompt tokens)."""
        return self._t().cached_share

    @property
    def cost_usd(self) -> float:
        """What the priced calls cost."""
        return self._t().cost_usd

    @property
    def cost_avoided_usd(self) -> float:
        """What the priced calls would have cost more without any caching (negative: not yet paid back)."""
        return self._t().cost_avoided_usd

    @property
    def unpriced_calls(self) -> int:
        """Model calls whose model the price catalog does not know (their cost is not counted)."""
        return self._t().unpriced_calls

    def summary(self) -> dict[str, Any]:
        """The totals as a plain dict (for logs, JSON output and reports)."""
        t = self._t()
        return {
            "calls": t.calls,
            "local_hits": t.local_hits,
            "tool_calls": t.tool_calls,
            "retrievals": t.retrievals,
            "input_tokens": t.input_tokens,
            "cache_read_tokens": t.cache_read_tokens,
            "cache_write_tokens": t.cache_write_tokens,
            "output_tokens": t.output_tokens,
            "hit_rate": t.cached_share,
            "cost_usd": t.cost_usd,
            "cost_avoided_usd": t.cost_avoided_usd,
            "unpriced_calls": t.unpriced_calls,
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
