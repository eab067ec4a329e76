"""The cache_metrics reducer is a join: commutative, associative, idempotent (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache.metrics import CacheMetrics, CallFigures, merge_cache_metrics
from promptcache.usage import CacheUsage

# Few ids, so collisions (the same call seen twice, or two records under one id) are common.
figures = st.builds(
    CallFigures,
    call_id=st.sampled_from(["a", "b", "c", "d", "e"]),
    kind=st.sampled_from(["model", "tool"]),
    tenant=st.sampled_from([None, "acme", "globex"]),
    input_tokens=st.integers(0, 10**7),
    cache_read_tokens=st.integers(0, 10**6),
    cache_write_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**5),
    cost_nusd=st.integers(-(10**12), 10**12),
    cost_avoided_nusd=st.integers(-(10**12), 10**12),
    priced=st.booleans(),
    local_hit=st.booleans(),
)
metrics = st.lists(figures, max_size=6).map(lambda fs: CacheMetrics.of(*fs))


@settings(deadline=None)  # no wall-clock limit: shared, noisy machines
@given(metrics, metrics)
def test_commutative(a: CacheMetrics, b: CacheMetrics) -> None:
    assert merge_cache_metrics(a, b) == merge_cache_metrics(b, a)


@settings(deadline=None)  # no wall-clock limit: shared, noisy machines
@given(metrics, metrics, metrics)
def test_associative(a: CacheMetrics, b: CacheMetrics, c: CacheMetrics) -> None:
    left = merge_cache_metrics(merge_cache_metrics(a, b), c)
    right = merge_cache_metrics(a, merge_cache_metrics(b, c))
    assert left == right
    assert left.cost_usd == right.cost_usd and left.cost_avoided_usd == right.cost_avoided_usd


@settings(deadline=None)  # no wall-clock limit: shared, noisy machines
@given(metrics, metrics)
def test_idempotent_no_double_counting(a: CacheMetrics, b: CacheMetrics) -> None:
    ab = merge_cache_metrics(a, b)
    # A subgraph handing back everything it saw, or a node-cache replay, adds nothing twice.
    assert merge_cache_metrics(ab, a) == ab
    assert merge_cache_metrics(ab, ab) == ab
    assert merge_cache_metrics(a, None) == a == merge_cache_metrics(CacheMetrics(), a)


@settings(deadline=None)  # no wall-clock limit: shared, noisy machines
@given(st.lists(figures, max_size=8))
def test_totals_are_sums_over_distinct_calls(fs: list[CallFigures]) -> None:
    m = CacheMetrics.of(*fs)
    model_calls = [r for r in m.records.values() if r.kind == "model" and not r.local_hit]
    assert m.calls == len(model_calls)
    assert m.input_tokens == sum(r.input_tokens for r in model_calls)
    assert m.cache_read_tokens == sum(r.cache_read_tokens for r in model_calls)
    assert m.local_hits == sum(1 for r in m.records.values() if r.local_hit)
    assert m.hit_rate >= 0.0 or m.input_tokens == 0


def test_plain_dict_from_a_checkpoint_is_accepted() -> None:
    m = CacheMetrics.from_usage(
        CacheUsage(provider="openai", model="gpt-4o", input_tokens=100, cache_read_tokens=50), call_id="x"
    )
    assert merge_cache_metrics(m.model_dump(), None) == m
    assert m.summary()["hit_rate"] == 0.5 and m.cost_avoided_usd > 0
