"""Every catalog entry says where its figures were read and when (issue 23, "The catalog").

Data-driven over the packaged file: a provider's entries added later are checked without a
change here. Also the lookup rules of the Claude 5 generation, Gemini 3.x and Bedrock ids, and
what an id the catalog does not list gets (its family's rules, unpriced; never an error).
"""

from __future__ import annotations

from datetime import date

import pytest

from promptcache.catalog import Catalog, UnknownModelError, load_catalog
from promptcache.figures import figures_from_usage
from promptcache.formats import WireFormat
from promptcache.providers.hints import min_cacheable_tokens, ttl_options
from promptcache.usage import CacheUsage

CATALOG = load_catalog()
ENTRIES = [(provider, model) for provider, info in CATALOG.providers.items() for model in info.models]
GLOBAL_OPUS = "global.anthropic.claude-opus-5-5"
ARN = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6"


@pytest.mark.parametrize(("provider", "model"), ENTRIES, ids=[f"{p}:{m}" for p, m in ENTRIES])
def test_every_entry_has_a_source_and_a_date(provider: str, model: str) -> None:
    info = CATALOG.lookup(model, provider=provider)
    assert info.id == model
    assert info.source.strip(), model
    assert isinstance(info.source_date, date)
    assert date(2025, 1, 1) <= info.source_date <= date(2026, 12, 31)


def test_new_entries_cite_their_own_page() -> None:
    # Entries added for issue 23 name the page they were read from, not only their provider's.
    for model in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-2"):
        spec = CATALOG.providers["anthropic"].models[model]
        assert spec.source is not None and spec.source.strip(), model
        assert spec.source_date == date(2026, 12, 7), model
    for model in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"):
        source = CATALOG.providers["anthropic"].models[model].source or ""
        assert f"platform.claude.com/docs/en/models/{model.removeprefix('claude-')}/overview" in source
    for model in ("gemini-3.1-pro-preview", "gemini-3.5-flash"):
        spec = CATALOG.providers["gemini"].models[model]
        assert spec.source is not None and "ai.google.dev" in spec.source, model


@pytest.mark.parametrize(
    ("model", "provider", "expected_provider", "expected_id", "input_price", "read", "w5m", "w1h"),
    [
        ("claude-opus-5-5", None, "anthropic", "claude-opus-5-5", 4.0, 0.20, 5.0, 8.0),
        ("claude-opus-5", None, "anthropic", "claude-opus-5", 5.0, 0.50, 6.25, 10.0),
        ("claude-sonnet-5-5", None, "anthropic", "claude-sonnet-5-5", 2.0, 0.10, 2.5, 4.0),
        ("claude-sonnet-5", None, "anthropic", "claude-sonnet-5", 2.0, 0.20, 2.5, 4.0),
        ("claude-haiku-5-5-20261007", None, "anthropic", "claude-haiku-5-5", 0.10, 0.01, 0.125, 0.20),
        ("claude-fable-5-2", None, "anthropic", "claude-fable-5-2", 8.0, 0.20, 10.0, 16.0),
        ("claude-fable-5-1", None, "anthropic", "claude-fable-5-1", 10.0, 0.25, 12.5, 20.0),
        ("global.anthropic.claude-opus-5-5", None, "bedrock", GLOBAL_OPUS, 4.0, 0.2, 5, 8),
        ("jp.anthropic.claude-opus-5-5", None, "bedrock", "claude-opus-5-5", 4.4, 0.22, 5.5, 8.8),
        ("anthropic.claude-sonnet-5-5", None, "bedrock", "claude-sonnet-5-5", 2.2, 0.11, 2.75, 4.4),
    ],
)
def test_claude_5_generation_prices(
    model: str,
    provider: str | None,
    expected_provider: str,
    expected_id: str,
    input_price: float,
    read: float,
    w5m: float,
    w1h: float,
) -> None:
    info = CATALOG.lookup(model, provider=provider)
    assert (info.provider, info.id) == (expected_provider, expected_id)
    p = info.prices
    assert (p.input, p.cache_read, p.cache_write["5m"], p.cache_write["1h"]) == pytest.approx(
        (input_price, read, w5m, w1h)
    )


def test_a_sibling_version_is_not_priced_as_its_neighbour() -> None:
    # "claude-opus-5-5" must never fall back on "claude-opus-5" (another model, other prices).
    assert CATALOG.lookup("claude-opus-5-5-20260922").id == "claude-opus-5-5"
    with pytest.raises(UnknownModelError):
        CATALOG.lookup("claude-opus-5-7")


def test_minimums_of_512_and_the_haiku_5_5_price_band() -> None:
    assert CATALOG.lookup("claude-opus-5").spec.min_cacheable_tokens == 512
    assert min_cacheable_tokens("claude-opus-5", WireFormat.ANTHROPIC_MESSAGES) == 512
    haiku = CATALOG.lookup("claude-haiku-5-5")
    assert haiku.prices_for(100_000).input == pytest.approx(0.10)
    assert haiku.prices_for(100_001).input == pytest.approx(0.50)


def test_gemini_3_minimums_and_storage() -> None:
    for model in ("gemini-3.1-pro-preview", "gemini-3.5-flash", "gemini-3.8-flash"):
        spec = CATALOG.lookup(model, provider="gemini").spec
        assert spec.min_cacheable_tokens == 4096, model
        assert spec.prices.cache_storage_per_hour is not None, model
    assert CATALOG.lookup("models/gemini-3.1-pro-preview").prices_for(300_000).input == 4.0


def test_capabilities_list_the_documented_models() -> None:
    takes = {
        m
        for m, spec in CATALOG.providers["anthropic"].models.items()
        if "mid_conversation_system" in spec.capabilities
    }
    assert {"claude-opus-5-5", "claude-opus-5", "claude-sonnet-5-5", "claude-haiku-5-5"} <= takes
    assert "claude-sonnet-5" not in takes  # "not available on Claude Sonnet 5"
    assert "claude-sonnet-4-5" not in takes


def test_application_inference_profile_arn_gets_family_rules_unpriced() -> None:
    rules = CATALOG.rules(ARN)
    assert rules is not None
    assert (rules.provider, rules.priced, rules.ttl_options) == ("bedrock", False, ("5m",))
    # The hints never refuse it: the default minimum and the 5m TTL the family shares.
    assert min_cacheable_tokens(ARN, WireFormat.BEDROCK_CONVERSE) == 1024
    assert ttl_options(ARN, WireFormat.BEDROCK_CONVERSE) == frozenset({"5m"})
    # Pricing flags it unpriced instead of raising.
    usage = CacheUsage(provider="bedrock", model=ARN, input_tokens=5000, cache_read_tokens=4000)
    figures = figures_from_usage(usage, call_id="c1")
    assert figures.priced is False and figures.cache_read_tokens == 4000


def test_inference_profile_arn_naming_its_model_is_priced() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-5-5"
    assert CATALOG.lookup(arn).id == "claude-opus-5-5"
    assert min_cacheable_tokens(arn, WireFormat.BEDROCK_CONVERSE) == 1024  # unconfirmed: default


def test_unknown_claude_gets_the_family_ttls_and_is_unpriced() -> None:
    rules = CATALOG.rules("claude-sonnet-6")
    assert rules is not None and rules.family == "claude-" and not rules.priced
    assert ttl_options("claude-sonnet-6", WireFormat.ANTHROPIC_MESSAGES) == frozenset({"5m", "1h"})
    assert CATALOG.rules("totally-unknown") is None
    usage = CacheUsage(provider="anthropic", model="claude-sonnet-6")
    assert figures_from_usage(usage, call_id="x").priced is False


def test_family_rules_come_from_data_not_code() -> None:
    custom = load_catalog(
        overrides={
            "providers": {
                "openai": {
                    "families": {
                        "ft:": {"source": "ex", "source_date": "2026-12-01", "ttl_options": ["in_memory"]}
                    }
                }
            }
        }
    )
    assert isinstance(custom, Catalog)
    rules = custom.rules("ft:gpt-4o:acme")
    assert rules is not None and rules.provider == "openai" and rules.ttl_options == ("in_memory",)


def test_a_converse_request_to_an_application_inference_profile_gets_cache_points() -> None:
    # langchain-aws #988: its middleware refused these ARNs. Here the request is laid out and
    # hinted like any Claude-on-Bedrock request (the shared cachePoint rules), never refused.
    from promptcache import PromptCache

    system = [{"text": "You are a support agent. " + "Follow the airline policy. " * 400}]
    body = {"modelId": ARN, "system": system, "messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    # Even under a policy that keeps prefixes an hour: the family's TTL is 5m only.
    cache = PromptCache({"entries": {"prompt_prefix": {"ttl": {"default": "1h"}}}})
    prepared = cache.prepare_request(body, format="bedrock-converse")
    assert [h.kind for h in prepared.plan.hints] == ["cachePoint", "cachePoint"]
    assert {h.ttl for h in prepared.plan.hints} == {"5m"}
