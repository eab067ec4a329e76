"""The integer pricing of recorded calls (``cost_nusd``, ``figures_from_usage``) against ``cost``.

``cost_nusd`` prices a call in whole pico-USD per token instead of Decimal arithmetic; what it
returns must be exactly what ``round(cost(u).total * 1e9)`` gives (and the same for the cost
avoided), and it must refuse exactly the usage ``cost`` refuses, for every model of the catalog
and every usage shape: TTL-split writes, unlabelled writes, tiered prices, providers without a
write premium, unknown TTLs and models, counts too large for the exact path.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promptcache.catalog import Catalog, default_catalog, load_catalog
from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.pricing import cost, cost_nusd
from promptcache.usage import CacheUsage

_CATALOG = default_catalog()
_MODELS = sorted((p, m) for p, info in _CATALOG.providers.items() for m in info.models)

# A catalog with rates the integer path cannot hold (more than six decimals per million tokens)
# next to ordinary ones, and a provider without a write premium that names no TTL at all.
_ODD = load_catalog(
    overrides={
        "providers": {
            "openai": {
                "models": {
                    "odd-model": {"prices": {"input": 1.0000001, "output": 3.0, "cache_read": 0.1234567}}
                }
            },
            "anthropic": {
                "models": {
                    "odd-writes": {
                        "prices": {
                            "input": 3.0,
                            "output": 15.0,
                            "cache_read": 0.3,
                            "cache_write": {"5m": 3.75, "1h": 6.00000001},
                        }
                    }
                }
            },
        }
    }
)

_TTLS = st.sampled_from(["5m", "1h", "30m", "24h"])
_COUNT = st.one_of(st.integers(0, 400_000), st.integers(0, 10**24))


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (KeyError, ValueError) as exc:
        return (type(exc), str(exc))


def _reference(usage: CacheUsage, catalog: Catalog | None = None) -> Any:
    """What ``figures_from_usage`` computed before the integer path: ``cost`` rounded to nano-USD."""
    try:
        c = cost(usage, catalog=catalog)
    except (KeyError, ValueError) as exc:
        return (type(exc), str(exc))
    return round(c.total * 1_000_000_000), round(c.cost_avoided * 1_000_000_000)


@st.composite
def _usages(draw: st.DrawFn, models: list[tuple[str, str]]) -> CacheUsage:
    provider, model = draw(st.sampled_from(models))
    model = draw(st.sampled_from([model, f"{model}-2099-01-01", "no-such-model"]))
    read = draw(_COUNT)
    by_ttl = draw(st.dictionaries(_TTLS, _COUNT, max_size=2))
    unlabelled = draw(st.one_of(st.just(0), _COUNT))
    write = sum(by_ttl.values()) + unlabelled
    uncached = draw(st.one_of(_COUNT, st.integers(150_000, 300_000)))  # around the long-context tiers
    return CacheUsage(
        provider=provider,
        model=model,
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_tokens_by_ttl=by_ttl,
        output_tokens=draw(_COUNT),
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_usages(_MODELS))
@example(
    CacheUsage(
        provider="openai", model="gpt-4o", input_tokens=16_000, cache_read_tokens=15_872, output_tokens=2
    )
)
@example(
    CacheUsage(
        provider="anthropic",
        model="claude-sonnet-4-20250514",
        input_tokens=2073,
        cache_write_tokens=2070,
        cache_write_tokens_by_ttl={"5m": 14, "1h": 2056},
        output_tokens=459,
    )
)
def test_cost_nusd_is_cost_rounded_to_nano_usd_for_every_catalog_model(usage: CacheUsage) -> None:
    assert _outcome(cost_nusd, usage) == _reference(usage)


@settings(max_examples=300, deadline=None)
@given(_usages([("openai", "odd-model"), ("anthropic", "odd-writes"), ("openai", "gpt-4o")]))
def test_rates_the_integer_path_cannot_hold_give_the_same_answer(usage: CacheUsage) -> None:
    assert _outcome(cost_nusd, usage, catalog=_ODD) == _reference(usage, _ODD)


def test_the_usual_call_is_priced_exactly() -> None:
    # 128 uncached at 2.50, 15_872 read at 1.25, 2 output at 10.00 (USD per million tokens).
    u = CacheUsage(
        provider="openai", model="gpt-4o", input_tokens=16_000, cache_read_tokens=15_872, output_tokens=2
    )
    assert cost_nusd(u) == (20_180_000, 19_840_000)


@pytest.mark.parametrize(
    "usage",
    [
        CacheUsage(provider="openai", model=None, input_tokens=10),
        CacheUsage(provider="openai", model="no-such-model", input_tokens=10),
        CacheUsage(provider="nowhere", model="gpt-4o", input_tokens=10),
        # A TTL the catalog has no write price for, even with no tokens written under it.
        CacheUsage(
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_tokens=10,
            cache_write_tokens=0,
            cache_write_tokens_by_ttl={"24h": 0},
        ),
        # The TTL split claims more than the writes (CacheUsage does not check it; cost does).
        CacheUsage(
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_tokens=10,
            cache_write_tokens=3,
            cache_write_tokens_by_ttl={"5m": 5},
        ),
    ],
)
def test_unpriceable_usage_raises_what_cost_raises(usage: CacheUsage) -> None:
    assert _outcome(cost_nusd, usage) == _reference(usage)
    assert isinstance(_reference(usage), tuple) and isinstance(_reference(usage)[0], type)


def _validated_figures(usage: CacheUsage, call_id: str, tenant: str | None) -> CallFigures:
    ref = _reference(usage)
    priced = not isinstance(ref[0], type)
    return CallFigures(
        call_id=call_id,
        kind="model",
        tenant=tenant,
        provider=usage.provider,
        model=usage.model,
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_tokens_by_ttl=dict(usage.cache_write_tokens_by_ttl),
        output_tokens=usage.output_tokens,
        cost_nusd=ref[0] if priced else 0,
        cost_avoided_nusd=ref[1] if priced else 0,
        priced=priced,
        local_hit=False,
    )


@settings(max_examples=200, deadline=None)
@given(_usages(_MODELS), st.text(min_size=1, max_size=8), st.one_of(st.none(), st.text(max_size=8)))
def test_figures_from_usage_is_the_validated_figures_of_cost(
    usage: CacheUsage, call_id: str, tenant: str | None
) -> None:
    got = figures_from_usage(usage, call_id=call_id, tenant=tenant)
    want = _validated_figures(usage, call_id, tenant)
    assert type(got) is CallFigures
    assert got == want
    assert got.__dict__ == want.__dict__ and list(got.__dict__) == list(want.__dict__)
    assert got.model_fields_set == want.model_fields_set
    assert got.model_dump(mode="json") == want.model_dump(mode="json")


def test_figures_from_usage_still_validates_what_it_did_not_compute() -> None:
    u = CacheUsage(provider="openai", model="gpt-4o", input_tokens=10)
    with pytest.raises(ValueError):
        figures_from_usage(u, call_id="c", kind="bogus")  # type: ignore[arg-type]
    # A usage built without validation is checked as the figures are built, as before.
    bad = CacheUsage.model_construct(provider="openai", model="gpt-4o", input_tokens=-5)
    with pytest.raises(ValueError):
        figures_from_usage(bad, call_id="c")
