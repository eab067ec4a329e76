"""What a call cost, what the same call would have cost without the cache, and when caching pays.

Prices come from the dated catalog (:mod:`promptcache.catalog`), never from code. A
``CacheUsage`` is priced as: uncached input at the input rate, cache reads at the read rate,
cache writes at the write rate of their TTL (an unlabelled write at the provider's default TTL,
or at the input rate where the provider charges no write premium), output at the output rate.

>>> from promptcache.usage import CacheUsage
>>> u = CacheUsage(provider="anthropic", model="claude-sonnet-4-20250514", input_tokens=2073,
...                cache_write_tokens=2070, cache_write_tokens_by_ttl={"5m": 14, "1h": 2056},
...                output_tokens=459)
>>> c = cost(u)
>>> round(c.cache_write, 6), round(c.total, 6)
(0.012389, 0.019283)
"""

from __future__ import annotations

import math
import sys
from datetime import date
from decimal import Decimal
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from promptcache.catalog import Catalog, ModelInfo, Prices, default_catalog
from promptcache.usage import CacheUsage

__all__ = ["CostBreakdown", "break_even_reads", "cost", "cost_nusd", "gemini_storage_cost"]

_MILLION = Decimal(1_000_000)


def _catalog(catalog: Catalog | None) -> Catalog:
    return catalog if catalog is not None else default_catalog()


@lru_cache(maxsize=4096)
def _d(value: float) -> Decimal:
    # Through str() so 0.075 stays 0.075 rather than its binary approximation. Memoized:
    # a handful of rates are converted on every priced call.
    return Decimal(str(value))


def _money(tokens: int, per_million: Decimal) -> Decimal:
    return Decimal(tokens) * per_million / _MILLION


class CostBreakdown(BaseModel):
    """The cost of one call, by component, in the catalog's currency.

    ``cost_without_cache`` prices every prompt token at the plain input rate (plus the same
    output); ``cost_avoided = cost_without_cache - total`` is negative when a call paid a
    write premium and read nothing back.
    """

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str = Field(description="the catalog id the usage was priced as")
    currency: str
    source_date: date = Field(description="when the prices used were checked")
    input: float = Field(description="uncached prompt tokens at the input rate")
    cache_read: float
    cache_write: float
    cache_write_by_ttl: dict[str, float] = Field(
        default_factory=dict, description="write cost per TTL label, unlabelled writes included"
    )
    output: float
    total: float
    cost_without_cache: float
    cost_avoided: float


def _write_rate(info: ModelInfo, prices: Prices, ttl: str | None) -> tuple[str, Decimal]:
    """The (label, price) a write of ``ttl`` (None: unlabelled) is billed at."""
    if ttl is None:
        ttl = info.default_write_ttl
    if ttl is not None and ttl in prices.cache_write:
        return ttl, _d(prices.cache_write[ttl])
    if not info.write_premium:
        # No write premium: the provider bills written tokens as ordinary input.
        return ttl or "input", _d(prices.input)
    known = ", ".join(prices.cache_write) or "none"
    raise ValueError(
        f"{info.provider} model {info.id!r} has no cache write price for TTL {ttl!r} "
        f"(catalog has: {known}); add it with load_catalog(overrides=...)"
    )


def cost(usage: CacheUsage, *, catalog: Catalog | None = None) -> CostBreakdown:
    """Price ``usage`` with the catalog (the packaged one by default).

    Raises ``UnknownModelError`` (a ``KeyError``) for a model the catalog lacks and
    ``ValueError`` for usage the catalog cannot price (a read on a model without a read price,
    a TTL without a write price, no model at all).
    """
    if not usage.model:
        raise ValueError("usage.model is not set; cannot look up a price")
    cat = _catalog(catalog)
    info = cat.lookup(usage.model, provider=usage.provider)
    prices = info.prices_for(usage.input_tokens)
    rate_in = _d(prices.input)

    input_cost = _money(usage.uncached_input_tokens, rate_in)

    read_cost = Decimal(0)
    if usage.cache_read_tokens:
        if prices.cache_read is None:
            raise ValueError(
                f"{info.provider} model {info.id!r} has no cache read price, yet the usage "
                f"reports {usage.cache_read_tokens} cache read tokens"
            )
        read_cost = _money(usage.cache_read_tokens, _d(prices.cache_read))

    by_ttl: dict[str, Decimal] = {}
    labelled = 0
    for ttl, tokens in usage.cache_write_tokens_by_ttl.items():
        label, rate = _write_rate(info, prices, ttl)
        by_ttl[label] = by_ttl.get(label, Decimal(0)) + _money(tokens, rate)
        labelled += tokens
    unlabelled = usage.cache_write_tokens - labelled
    if unlabelled < 0:
        raise ValueError(
            f"cache_write_tokens_by_ttl sums to {labelled}, more than cache_write_tokens "
            f"({usage.cache_write_tokens})"
        )
    if unlabelled:
        label, rate = _write_rate(info, prices, None)
        by_ttl[label] = by_ttl.get(label, Decimal(0)) + _money(unlabelled, rate)
    write_cost = sum(by_ttl.values(), Decimal(0))

    output_cost = _money(usage.output_tokens, _d(prices.output))
    total = input_cost + read_cost + write_cost + output_cost
    without = _money(usage.input_tokens, rate_in) + output_cost
    return CostBreakdown(
        provider=info.provider,
        model=info.id,
        currency=cat.currency,
        source_date=info.source_date,
        input=float(input_cost),
        cache_read=float(read_cost),
        cache_write=float(write_cost),
        cache_write_by_ttl={k: float(v) for k, v in by_ttl.items()},
        output=float(output_cost),
        total=float(total),
        cost_without_cache=float(without),
        cost_avoided=float(without - total),
    )


# -- the per-call figures: the same prices as integers ----------------------------------------
#
# ``cost_nusd`` runs on every recorded model call. Every catalog rate has at most six decimals in
# USD per million tokens, i.e. is a whole number of pico-USD per token; priced that way a call's
# cost is an exact integer, the same exact value ``cost`` reaches through Decimal arithmetic
# (whose 28 digits hold it exactly below ``_EXACT``). Both then go through one correctly rounded
# conversion to float (int / int and float(Decimal) both are), so the nano-USD figures agree to
# the unit. Anything else (a rate with more decimals, usage ``cost`` refuses, sums past
# ``_EXACT``) takes ``cost`` itself: same answer, same error.

_PICO = 10**12
_EXACT = 10**27


def _pico(per_million: Decimal) -> int | None:
    """A rate in USD per million tokens as whole pico-USD per token (None: not a whole number)."""
    scaled = per_million.scaleb(6)
    whole = int(scaled)
    return whole if scaled == whole else None


class _Rates:
    """One (model, price tier) in pico-USD per token, with the write rate of each TTL asked so far."""

    __slots__ = ("info", "input", "output", "prices", "read", "writes")

    def __init__(self, info: ModelInfo, prices: Prices) -> None:
        self.info, self.prices = info, prices
        self.input = _pico(_d(prices.input))
        self.output = _pico(_d(prices.output))
        self.read = None if prices.cache_read is None else _pico(_d(prices.cache_read))
        self.writes: dict[str | None, int | None] = {}

    def write(self, ttl: str | None) -> int | None:
        """The pico rate a write of ``ttl`` is billed at (None: let ``cost`` decide or refuse)."""
        try:
            return self.writes[ttl]
        except KeyError:
            pass
        try:
            whole = _pico(_write_rate(self.info, self.prices, ttl)[1])
        except ValueError:
            whole = None
        self.writes[ttl] = whole
        return whole


class _ModelRates:
    """A model's rates in one catalog: the standard tier and, past its threshold, the long-context
    one (the standard one again where there is none, so picking needs no test for it)."""

    __slots__ = ("catalog", "long", "standard", "threshold")

    def __init__(self, catalog: Catalog, info: ModelInfo) -> None:
        self.catalog = catalog
        self.standard = _Rates(info, info.spec.prices)
        tier = info.spec.long_context
        self.threshold = sys.maxsize if tier is None else tier.threshold_tokens
        self.long = self.standard if tier is None else _Rates(info, tier.prices)


# By (model, provider) as the usage names them, for the catalog the entry was made from: a
# catalog swapped by use_catalog() (or passed in) makes a new entry on its first call.
_by_model: dict[tuple[str, str], _ModelRates] = {}


def _rates(catalog: Catalog, model: str, provider: str) -> _ModelRates:
    key = (model, provider)
    entry = _by_model.get(key)
    if entry is None or entry.catalog is not catalog:
        entry = _ModelRates(catalog, catalog.lookup(model, provider=provider))
        if len(_by_model) < 4096:
            _by_model[key] = entry
    return entry


def cost_nusd(usage: CacheUsage, *, catalog: Catalog | None = None) -> tuple[int, int]:
    """``(total, cost_avoided)`` of ``usage`` in nano-USD: ``round(cost(usage).total * 1e9)`` and
    ``round(cost(usage).cost_avoided * 1e9)``, computed in integers.

    Raises what :func:`cost` raises, for the same usage.
    """
    # One straight function: on a cold CPU cache each further call is a visible share of it.
    model, provider = usage.model, usage.provider
    if not model:
        return _by_cost(usage, catalog)
    cat = catalog if catalog is not None else default_catalog()
    entry = _by_model.get((model, provider))
    if entry is None or entry.catalog is not cat:
        entry = _rates(cat, model, provider)
    n_in, n_read, n_write, n_out = (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
    )
    r = entry.long if n_in > entry.threshold else entry.standard  # as ModelInfo.prices_for
    rate_in, rate_out = r.input, r.output
    uncached = n_in - n_read - n_write
    # Negative counts (usage built without validation) are left to ``cost``: with every part
    # non-negative, no partial sum exceeds the total, so ``_EXACT`` bounds them all.
    if rate_in is None or rate_out is None or min(uncached, n_read, n_write, n_out) < 0:
        return _by_cost(usage, catalog)
    total = uncached * rate_in + n_out * rate_out
    if n_read:
        if r.read is None:
            return _by_cost(usage, catalog)
        total += n_read * r.read
    labelled = 0
    for ttl, tokens in usage.cache_write_tokens_by_ttl.items():
        rate = r.write(ttl)
        if rate is None or tokens < 0:
            return _by_cost(usage, catalog)
        total += tokens * rate
        labelled += tokens
    if labelled != n_write:
        rate = r.write(None)
        if rate is None or labelled > n_write:
            return _by_cost(usage, catalog)
        total += (n_write - labelled) * rate
    without = n_in * rate_in + n_out * rate_out
    if total >= _EXACT or without >= _EXACT:
        return _by_cost(usage, catalog)
    # As round(float(Decimal total) * 1e9): the correctly rounded float first, then nano-USD.
    return round(total / _PICO * 1e9), round((without - total) / _PICO * 1e9)


def _by_cost(usage: CacheUsage, catalog: Catalog | None) -> tuple[int, int]:
    """:func:`cost_nusd` through :func:`cost`: for what the integer path leaves to it."""
    c = cost(usage, catalog=catalog)
    return round(c.total * 1e9), round(c.cost_avoided * 1e9)


def break_even_reads(
    model: str,
    ttl: str | None = None,
    *,
    provider: str | None = None,
    seconds: float = 0.0,
    catalog: Catalog | None = None,
) -> int:
    """How many cache reads pay back one cache write of ``ttl``.

    A write costs ``write - input`` more per token than not caching (plus storage for
    ``seconds`` where the provider charges it); each read saves ``input - read``. The answer
    is the smallest whole number of reads whose savings cover that premium (0 when writing
    costs nothing extra).

    >>> break_even_reads("claude-sonnet-4-5", "5m", provider="anthropic")
    1
    >>> break_even_reads("gemini-2.5-pro", provider="gemini", seconds=3600)
    4
    """
    info = _catalog(catalog).lookup(model, provider=provider)
    prices = info.prices
    if prices.cache_read is None:
        raise ValueError(f"{info.provider} model {info.id!r} has no cache read price")
    _, write = _write_rate(info, prices, ttl)
    premium = write - _d(prices.input)
    if seconds:
        if prices.cache_storage_per_hour is None:
            raise ValueError(f"{info.provider} model {info.id!r} has no cache storage price")
        premium += _d(prices.cache_storage_per_hour) * _d(seconds) / Decimal(3600)
    saving = _d(prices.input) - _d(prices.cache_read)
    if premium <= 0:
        return 0
    if saving <= 0:
        raise ValueError(f"{info.provider} model {info.id!r}: a cache read saves nothing")
    return math.ceil(premium / saving)


def gemini_storage_cost(model: str, tokens: int, seconds: float, *, catalog: Catalog | None = None) -> float:
    """The storage charge of an explicit Gemini cache of ``tokens`` kept for ``seconds``.

    >>> round(gemini_storage_cost("gemini-2.5-flash", 3512, 120), 9)
    0.000117067
    """
    if tokens < 0 or seconds < 0:
        raise ValueError("tokens and seconds must be non-negative")
    info = _catalog(catalog).lookup(model, provider="gemini")
    prices = info.prices_for(tokens)
    if prices.cache_storage_per_hour is None:
        raise ValueError(f"gemini model {info.id!r} has no cache storage price in the catalog")
    per_hour = _money(tokens, _d(prices.cache_storage_per_hour))
    return float(per_hour * _d(seconds) / Decimal(3600))
