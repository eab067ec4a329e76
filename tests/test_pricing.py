"""Costs of real recorded calls, checked against figures computed by hand from the catalog.

The usages are the ones the shared cassettes record (``promptcache/lab/data/real/SOURCES.md``;
``tests/providers`` proves they parse that way through the official SDKs). Each expected figure
is written out as tokens x price per million, with the catalog price it uses.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import yaml

from promptcache.catalog import UnknownModelError
from promptcache.lab.bundled import CASSETTES
from promptcache.pricing import CostBreakdown, break_even_reads, cost, gemini_storage_cost
from promptcache.providers.usage import usage_from_response
from promptcache.usage import CacheUsage

M = 1_000_000


def _assert_cost(got: CostBreakdown, **expected: float) -> None:
    for field, value in expected.items():
        assert getattr(got, field) == pytest.approx(value, rel=1e-12, abs=1e-15), field
    assert got.total == pytest.approx(got.input + got.cache_read + got.cache_write + got.output)
    assert got.cost_avoided == pytest.approx(got.cost_without_cache - got.total)


def test_anthropic_mixed_ttl_write_end_to_end_from_the_cassette_body() -> None:
    """anthropic__ddtrace_litellm__cache_write_1h_ttl: parse the recorded body, then price it."""
    data = yaml.safe_load(
        (CASSETTES / "anthropic__ddtrace_litellm__cache_write_1h_ttl.yaml").read_text("utf-8")
    )
    raw: Any = data["interactions"][0]["response"]["body"]["string"]
    body = json.loads(gzip.decompress(raw) if isinstance(raw, bytes) else raw)
    usage = usage_from_response("anthropic-messages", body)
    got = cost(usage)
    # claude-sonnet-4: input $3, 5m write $3.75, 1h write $6, output $15 per M
    _assert_cost(
        got,
        input=3 * 3.00 / M,  # 0.000009
        cache_write=14 * 3.75 / M + 2056 * 6.00 / M,  # 0.0000525 + 0.012336
        cache_read=0.0,
        output=459 * 15.00 / M,  # 0.006885
        total=0.0192825,
        cost_without_cache=2073 * 3.00 / M + 459 * 15.00 / M,  # 0.013104
        cost_avoided=0.013104 - 0.0192825,  # -0.0061785: a write-only call costs more
    )
    assert got.cache_write_by_ttl == pytest.approx({"5m": 0.0000525, "1h": 0.012336})
    assert (got.provider, got.model) == ("anthropic", "claude-sonnet-4")


def test_anthropic_legacy_unlabelled_write_is_priced_at_5m_then_read() -> None:
    """anthropic__openllmetry__prompt_caching_legacy: no TTL split in the 2025-03 usage."""
    model = "claude-3-5-sonnet-20240620"  # $3 in, $3.75 5m write, $0.30 read, $15 out
    write = CacheUsage(
        provider="anthropic",
        model=model,
        input_tokens=4 + 1163,
        cache_write_tokens=1163,
        output_tokens=187,
    )
    _assert_cost(
        cost(write),
        input=4 * 3.00 / M,  # 0.000012
        cache_write=1163 * 3.75 / M,  # 0.00436125
        output=187 * 15.00 / M,  # 0.002805
        total=0.00717825,
        cost_without_cache=1167 * 3.00 / M + 187 * 15.00 / M,  # 0.006306
        cost_avoided=-0.00087225,
    )
    assert cost(write).cache_write_by_ttl == pytest.approx({"5m": 0.00436125})
    read = CacheUsage(
        provider="anthropic",
        model=model,
        input_tokens=4 + 1163,
        cache_read_tokens=1163,
        output_tokens=202,
    )
    _assert_cost(
        cost(read),
        input=0.000012,
        cache_read=1163 * 0.30 / M,  # 0.0003489
        output=202 * 15.00 / M,  # 0.00303
        total=0.0033909,
        cost_without_cache=0.003501 + 0.00303,  # 0.006531
        cost_avoided=0.0031401,
    )


def test_openai_chat_automatic_read() -> None:
    """openai_chat__openllmetry__prompt_caching call 2: 1024 of 1149 prompt tokens cached."""
    usage = CacheUsage(
        provider="openai",
        model="gpt-4o-mini-2024-07-18",  # $0.15 in, $0.075 cached, $0.60 out
        input_tokens=1149,
        cache_read_tokens=1024,
        output_tokens=353,
    )
    _assert_cost(
        cost(usage),
        input=125 * 0.15 / M,  # 0.00001875
        cache_read=1024 * 0.075 / M,  # 0.0000768
        cache_write=0.0,
        output=353 * 0.60 / M,  # 0.0002118
        total=0.00030735,
        cost_without_cache=1149 * 0.15 / M + 0.0002118,  # 0.00038415
        cost_avoided=0.0000768,
    )


def test_openai_responses_reasoning_tokens_are_output() -> None:
    usage = CacheUsage(
        provider="openai",
        model="gpt-4o-2024-08-06",  # openai_responses__ddtrace__cache_read
        input_tokens=1515,
        cache_read_tokens=1390,
        output_tokens=8,
    )
    # $2.50 in, $1.25 cached, $10 out
    _assert_cost(
        cost(usage),
        input=125 * 2.50 / M,  # 0.0003125
        cache_read=1390 * 1.25 / M,  # 0.0017375
        output=8 * 10.00 / M,  # 0.00008
        total=0.00213,
        cost_avoided=1390 * (2.50 - 1.25) / M,  # 0.0017375
    )


def test_bedrock_converse_stream_write_then_read_claude_3_7() -> None:
    """bedrock_converse_stream__ddtrace__prompt_caching: us. profile of Claude 3.7 Sonnet."""
    model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"  # $3 in, $3.75 write, $0.30 read
    write = CacheUsage(
        provider="bedrock",
        model=model,
        input_tokens=11 + 1028,
        cache_write_tokens=1028,
        output_tokens=236,
    )
    _assert_cost(
        cost(write),
        input=11 * 3.00 / M,  # 0.000033
        cache_write=1028 * 3.75 / M,  # 0.003855
        output=236 * 15.00 / M,  # 0.00354
        total=0.007428,
        cost_without_cache=1039 * 3.00 / M + 0.00354,  # 0.006657
        cost_avoided=-0.000771,
    )
    read = CacheUsage(
        provider="bedrock",
        model=model,
        input_tokens=12 + 1028,
        cache_read_tokens=1028,
        output_tokens=250,
    )
    _assert_cost(
        cost(read),
        input=12 * 3.00 / M,  # 0.000036
        cache_read=1028 * 0.30 / M,  # 0.0003084
        output=250 * 15.00 / M,  # 0.00375
        total=0.0040944,
        cost_without_cache=0.00312 + 0.00375,  # 0.00687
        cost_avoided=0.0027756,
    )
    # Over the pair, caching paid: 0.006657 + 0.00687 - (0.007428 + 0.0040944)
    assert cost(write).cost_avoided + cost(read).cost_avoided == pytest.approx(0.0020046)


def test_bedrock_regional_sonnet_4_5_write() -> None:
    """bedrock_converse__pydantic_ai__cache_write_and_read call 1, us. profile (+10%)."""
    usage = CacheUsage(
        provider="bedrock",
        model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        input_tokens=2 + 1322,
        cache_write_tokens=1322,
        output_tokens=5,
    )
    # $3.30 in, $4.125 5m write, $16.50 out
    _assert_cost(
        cost(usage),
        input=2 * 3.30 / M,  # 0.0000066
        cache_write=1322 * 4.125 / M,  # 0.00545325
        output=5 * 16.50 / M,  # 0.0000825
        total=0.00554235,
    )


def test_gemini_explicit_cache_create_read_and_storage() -> None:
    """gemini__pydantic_ai__cached_content: create (3512 tokens, ttl 120s), then two reads."""
    create = CacheUsage(
        provider="gemini",
        model="gemini-2.5-flash",
        input_tokens=3512,
        cache_write_tokens=3512,
    )
    created = cost(create)  # no write premium: written tokens cost the $0.30 input rate
    _assert_cost(created, cache_write=3512 * 0.30 / M, total=0.0010536, cost_avoided=0.0)
    assert created.cache_write_by_ttl == pytest.approx({"input": 0.0010536})
    read = CacheUsage(
        provider="gemini",
        model="gemini-2.5-flash",
        input_tokens=3520,
        cache_read_tokens=3512,
        output_tokens=2 + 42,
        thinking_tokens=42,
    )
    # $0.30 in, $0.03 cached, $2.50 out (thinking included)
    _assert_cost(
        cost(read),
        input=8 * 0.30 / M,  # 0.0000024
        cache_read=3512 * 0.03 / M,  # 0.00010536
        output=44 * 2.50 / M,  # 0.00011
        total=0.00021776,
        cost_without_cache=3520 * 0.30 / M + 0.00011,  # 0.001166
        cost_avoided=0.00094824,
    )
    # storage: 3512 tokens x $1.00 per M per hour x 120 s / 3600 s
    assert gemini_storage_cost("gemini-2.5-flash", 3512, 120) == pytest.approx(3512 * 1.00 / M * 120 / 3600)
    assert gemini_storage_cost("gemini-2.5-pro", 1_000_000, 1800) == pytest.approx(2.25)


def test_gpt_5_6_writes_are_priced_at_the_write_rate() -> None:
    """The pydantic-ai gpt-5.6-sol cassette's figures (4,020 input, 4,012 written): the guide's
    cost formula (developers.openai.com/api/docs/guides/prompt-caching, "Monitor cache
    performance"): ordinary input at the input rate, writes at 1.25x, reads at 0.1x."""
    usage = CacheUsage(provider="openai", model="gpt-5.6-sol", input_tokens=4020, cache_write_tokens=4012)
    got = cost(usage)
    _assert_cost(got, input=8 * 5.0 / M, cache_write=4012 * 6.25 / M, total=8 * 5.0 / M + 4012 * 6.25 / M)
    assert got.cache_write_by_ttl == pytest.approx({"30m": 4012 * 6.25 / M})
    # The write costs more than the same tokens uncached: 1.25x, what the guide says.
    assert got.cache_write == pytest.approx(1.25 * 4012 * 5.0 / M)
    # A later full read of that prefix costs 0.1x; write + one read = 1.35x two uncached sends.
    read = cost(CacheUsage(provider="openai", model="gpt-5.6-sol", input_tokens=4020, cache_read_tokens=4012))
    assert read.cache_read == pytest.approx(0.1 * 4012 * 5.0 / M)
    assert (got.cache_write + read.cache_read) / (2 * 4012 * 5.0 / M) == pytest.approx(1.35 / 2)
    # A model the catalog lacks is refused with the way to add it, never priced by a sibling.
    with pytest.raises(UnknownModelError, match=r"gpt-6\.1-terra"):
        cost(usage.model_copy(update={"model": "gpt-6.1-terra"}))


def test_gpt_5_6_long_context_writes_double() -> None:
    usage = CacheUsage(
        provider="openai", model="gpt-5.6-terra", input_tokens=300_000, cache_write_tokens=290_000
    )
    got = cost(usage)
    assert got.cache_write == pytest.approx(290_000 * 5.00 / M)
    assert got.input == pytest.approx(10_000 * 4.00 / M)


def test_unpriceable_usage_is_refused() -> None:
    with pytest.raises(ValueError, match=r"usage\.model"):
        cost(CacheUsage(provider="openai", input_tokens=10))
    with pytest.raises(ValueError, match="no cache read price"):
        cost(CacheUsage(provider="openai", model="gpt-5-pro", input_tokens=10, cache_read_tokens=5))
    with pytest.raises(ValueError, match="TTL '24h'"):
        cost(
            CacheUsage(
                provider="anthropic",
                model="claude-sonnet-4-5",
                input_tokens=10,
                cache_write_tokens=5,
                cache_write_tokens_by_ttl={"24h": 5},
            )
        )


def test_long_context_prices_the_whole_call() -> None:
    usage = CacheUsage(
        provider="gemini",
        model="gemini-2.5-pro",
        input_tokens=300_000,
        cache_read_tokens=250_000,
        output_tokens=1000,
    )
    # over 200K: $2.50 in, $0.25 cached, $15 out
    _assert_cost(
        cost(usage),
        input=50_000 * 2.50 / M,  # 0.125
        cache_read=250_000 * 0.25 / M,  # 0.0625
        output=1000 * 15.00 / M,  # 0.015
        total=0.2025,
    )


@pytest.mark.parametrize(
    ("model", "provider", "ttl", "seconds", "expected"),
    [
        # (write - input) / (input - read), rounded up to whole reads
        ("claude-sonnet-4-5", "anthropic", "5m", 0, 1),  # 0.75 / 2.70 = 0.28
        ("claude-sonnet-4-5", "anthropic", "1h", 0, 2),  # 3.00 / 2.70 = 1.11
        ("claude-3-5-haiku", "anthropic", "1h", 0, 2),  # 0.80 / 0.72 = 1.11
        ("gpt-4o", "openai", None, 0, 0),  # no write premium
        ("gemini-2.5-flash", "gemini", None, 0, 0),  # no storage time, no premium
        ("gemini-2.5-flash", "gemini", None, 3600, 4),  # 1.00 / 0.27 = 3.7
        ("gemini-2.5-pro", "gemini", None, 7200, 8),  # 9.00 / 1.125 = 8.0
    ],
)
def test_break_even_reads(model: str, provider: str, ttl: str | None, seconds: float, expected: int) -> None:
    assert break_even_reads(model, ttl, provider=provider, seconds=seconds) == expected


def test_use_catalog_reaches_pricing_and_hints_alike() -> None:
    # One default catalog: a model added by override is priced and gets its hints.
    from promptcache.catalog import load_catalog, use_catalog
    from promptcache.formats import WireFormat
    from promptcache.providers.hints import model_info

    extra = {"providers": {"openai": {"models": {"gpt-9-test": {"prices": {"input": 1.0, "output": 2.0}}}}}}
    usage = CacheUsage(provider="openai", model="gpt-9-test", input_tokens=1_000_000, output_tokens=0)
    with pytest.raises(KeyError):
        cost(usage)
    use_catalog(load_catalog(overrides=extra))
    try:
        assert cost(usage).total == pytest.approx(1.0)
        assert model_info("gpt-9-test", WireFormat.OPENAI_CHAT) is not None
    finally:
        use_catalog(None)
    with pytest.raises(KeyError):
        cost(usage)


def test_a_catalog_copy_does_not_share_found_models() -> None:
    from promptcache.catalog import load_catalog

    cat = load_catalog()
    assert cat.lookup("gpt-4o").prices.input > 0
    bare = cat.model_copy(update={"providers": {"anthropic": cat.providers["anthropic"]}})
    with pytest.raises(KeyError):
        bare.lookup("gpt-4o")
