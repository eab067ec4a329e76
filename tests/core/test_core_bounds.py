"""Bounded memory and a bounded body (issue 19, item 7): what grows per tenant or model stops growing.

Memory itself is measured in ``make reliability`` (section ``linear``: tracemalloc at 100k
tenants); here each table is held to its stated bound, and an oversized body to its rule.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.figures import Degradation
from promptcache.pipeline.learning import conversation_id
from promptcache.stats import OTHER_TENANT, StatsRecorder
from promptcache.usage import CacheUsage


def _usage(model: str, tokens: int = 100) -> CacheUsage:
    return CacheUsage(provider="openai", model=model, input_tokens=tokens, cache_read_tokens=tokens // 2)


def _body(system: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
    }


def test_usage_rows_are_bounded_and_the_totals_stay_exact() -> None:
    rec = StatsRecorder(max_rows=3)
    for i in range(10):
        rec.record(f"t{i}", _usage("gpt-4o"))
    rec.record("t9", _usage("gpt-4o"))  # recorded again: the most recent rows are the ones kept
    rec.record("t10", _usage("gpt-4o"))
    snap = rec.snapshot()
    kept = {r.tenant for r in snap.rows if r.tenant != OTHER_TENANT}
    assert len(rec) == 3 and kept == {"t8", "t9", "t10"}
    other = snap.get(OTHER_TENANT, None)
    assert other.calls == 8 and other.input_tokens == 800  # t0..t7, added up
    assert snap.total.calls == 12 and snap.total.input_tokens == 1200  # nothing lost
    persisted = rec.persisted("w", 0.0)
    assert sum(r.calls for r in persisted.rows) == 12
    with pytest.raises(ValueError, match="max_rows"):
        StatsRecorder(max_rows=0)


def test_key_contracts_and_families_are_bounded_by_max_families() -> None:
    cache = PromptCache(record_stats=False, max_families=8)
    first = cache.prepare_request(_body("You help."), format="openai-chat", tenant="tenant-0").plan
    for i in range(1, 50):
        cache.prepare_request(_body("You help."), format="openai-chat", tenant=f"tenant-{i}")
        cache.record_usage(_usage(f"model-{i % 5}"), tenant=f"tenant-{i}")
    assert len(cache._contracts) <= 8 and len(cache._families) <= 8
    assert ("tenant-0", "gpt-4o") not in cache._contracts  # let go ...
    again = cache.prepare_request(_body("You help."), format="openai-chat", tenant="tenant-0").plan
    assert again.prefix_key == first.prefix_key  # ... and made again: the same keys


def test_a_conversation_is_remembered_by_a_small_digest() -> None:
    cid = conversation_id([{"role": "user", "content": "hi"}])
    assert isinstance(cid, bytes) and len(cid) == 16
    assert cid == conversation_id([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}])
    assert cid != conversation_id([{"role": "user", "content": "hello"}])


def test_a_body_above_max_body_bytes_is_passed_through_unprocessed_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = PromptCache(record_stats=False, max_body_bytes=10_000)
    small = _body("Be brief.\nCurrent date: 2024-05-15")
    big = _body("Be brief.\nCurrent date: 2024-05-15\n" + "Policy line.\n" * 1000)
    assert cache.prepare_request(small, format="openai-chat").plan.blocks  # processed
    caplog.set_level(logging.WARNING, logger="promptcache")
    for _ in range(3):
        out = cache.prepare_request(big, format="openai-chat", tenant="acme")
        assert out.body == big and out.body is not big  # as sent, not the caller's own dict
        assert out.plan.blocks == [] and out.plan.hints == [] and out.plan.tenant == "acme"
        assert "max_body_bytes=10,000" in out.plan.decisions[0]
    assert cache.degradations() == {Degradation.BODY_TOO_LARGE.value: 3}
    assert len(caplog.records) == 1  # said once; counted every time
    assert "Policy line" not in caplog.text  # sizes only, never the prompt


def test_max_body_bytes_must_be_a_positive_count() -> None:
    for bad in (0, -1, True, 1.5, "8MB"):
        with pytest.raises(ValueError, match="max_body_bytes"):
            PromptCache(max_body_bytes=bad)  # type: ignore[arg-type]
