"""The one figures model: Totals merge exactly in any order, reasons are enums."""

from __future__ import annotations

from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from promptcache.explain import Cause
from promptcache.figures import (
    DENIALS,
    CacheMetrics,
    CallFigures,
    LookupReason,
    PrefixMissReason,
    Totals,
    figures_from_usage,
)
from promptcache.stats import StatsRecorder
from promptcache.telemetry.aggregate import StatsRecord
from promptcache.usage import CacheUsage

counts = st.integers(0, 10**9)
money = st.integers(-(10**15), 10**15)
reasons = st.dictionaries(st.sampled_from([r.value for r in LookupReason]), st.integers(1, 100), max_size=3)
totals = st.builds(
    Totals,
    calls=counts,
    hits=counts,
    denied=counts,
    input_tokens=counts,
    cache_read_tokens=counts,
    cache_write_tokens_by_ttl=st.dictionaries(st.sampled_from(["5m", "1h"]), counts, max_size=2),
    cost_nusd=money,
    cost_avoided_nusd=money,
    unpriced_calls=counts,
    miss_reasons=reasons,
)


@given(totals, totals)
def test_merge_is_commutative(a: Totals, b: Totals) -> None:
    assert a + b == b + a


@given(totals, totals, totals)
def test_merge_is_associative_and_exact(a: Totals, b: Totals, c: Totals) -> None:
    assert (a + b) + c == a + (b + c)
    assert ((a + b) + c).cost_nusd == a.cost_nusd + b.cost_nusd + c.cost_nusd


@given(totals, totals)
def test_merge_changes_neither_side_and_empty_is_neutral(a: Totals, b: Totals) -> None:
    before = (a.model_dump(), b.model_dump())
    _ = a + b
    assert (a.model_dump(), b.model_dump()) == before
    assert a + Totals() == a


@given(totals)
def test_a_dump_validates_back(t: Totals) -> None:
    assert Totals.model_validate(t.model_dump()) == t
    assert Totals.model_validate_json(t.model_dump_json()) == t


def test_one_model_behind_the_three_views() -> None:
    u = CacheUsage(
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=2073,
        cache_write_tokens=2056,
        cache_write_tokens_by_ttl={"1h": 2056},
        output_tokens=12,
    )
    f = figures_from_usage(u, call_id="run-1", tenant="acme")
    rec = StatsRecorder()
    rec.record("acme", u, figures=f)
    record = rec.persisted("w", 0.0).rows[0]
    channel = CacheMetrics.of_call(f).totals
    # The channel's totals, the store record and cache.stats() hold the same figures.
    assert isinstance(record, StatsRecord) and record.figures() == channel == Totals.of_call(f)
    assert channel.cache_write_tokens_by_ttl == {"1h": 2056}
    row = rec.snapshot().get("acme", "claude-sonnet-4-5")
    assert (row.calls, row.cache_write_tokens, row.cost_usd) == (1, 2056, channel.cost_usd)


def test_local_hits_tools_and_retrievals_count_apart_from_provider_calls() -> None:
    t = Totals.sum(
        Totals.of_call(f)
        for f in (
            CallFigures(call_id="a", kind="tool", local_hit=True),
            CallFigures(call_id="b", kind="retrieval"),
            CallFigures(call_id="c", kind="model", local_hit=True, cost_avoided_nusd=5),
        )
    )
    assert (t.calls, t.local_hits, t.tool_calls, t.retrievals, t.cost_avoided_nusd) == (0, 2, 1, 1, 5)


def test_prefix_miss_reasons_are_the_explained_causes() -> None:
    assert {r.value for r in PrefixMissReason} == {*get_args(Cause), "first_request"}


def test_every_lookup_reason_has_words_and_a_denial_verdict() -> None:
    # Each producer sets its reason on the LookupResult (tests/artifacts/test_outcome.py); here
    # the enum itself: the words `why` is rendered from, and which members are policy denials.
    assert all(r.text for r in LookupReason)
    assert len({r.text for r in LookupReason}) == len(LookupReason)
    assert {r for r in LookupReason if r.denied} == DENIALS
    assert {
        LookupReason.SIDE_EFFECT,
        LookupReason.INELIGIBLE,
        LookupReason.POLICY_DENIED,
        LookupReason.SECRET,
        LookupReason.PII,
        LookupReason.TENANT_MISSING,
        LookupReason.UNKEYABLE,
    } == DENIALS


def test_the_store_record_reads_the_v1_layout_and_writes_no_zero_figures() -> None:
    from promptcache.telemetry.aggregate import PersistedStats

    # A record as the previous version wrote it: every v1 field, no figures it did not know.
    v1 = (
        '{"v":1,"writer":"w","origin":"cache","process":"h:1","started_at":0.0,"updated_at":1.0,'
        '"rows":[{"tenant":"acme","model":"gpt-4o","agent":"","entry_type":"prompt_prefix","calls":1,'
        '"hits":0,"misses":0,"denied":0,"stale":0,"usage_calls":1,"input_tokens":100,'
        '"cache_read_tokens":50,"cache_write_tokens":0,"output_tokens":5,"cost_nusd":237500,'
        '"cost_avoided_nusd":62500,"miss_reasons":{}}]}'
    )
    rec = PersistedStats.model_validate_json(v1)
    assert rec.rows[0].figures() == Totals(
        calls=1, usage_calls=1, input_tokens=100, cache_read_tokens=50, output_tokens=5,
        cost_nusd=237500, cost_avoided_nusd=62500,
    )  # fmt: skip
    # What is written leaves zero figures out, so a v1 reader (which forbids unknown fields)
    # reads it too, unless a figure it does not know was used.
    written = rec.model_dump_json(exclude_defaults=True)
    assert "local_hits" not in written and "unpriced_calls" not in written
    assert PersistedStats.model_validate_json(written) == rec
