"""The packaged model catalog: lookup rules, overrides, and sanity of the dated figures."""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path

import pytest
import yaml

from promptcache.catalog import Catalog, UnknownModelError, load_catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("model", "provider", "expected_provider", "expected_id"),
    [
        # ids exactly as the shared cassettes report or request them
        ("claude-3-5-sonnet-20240620", None, "anthropic", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", None, "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", None, "anthropic", "claude-sonnet-4"),
        ("gpt-4o-mini-2024-07-18", None, "openai", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", None, "openai", "gpt-4o"),
        ("gemini-2.5-flash", None, "gemini", "gemini-2.5-flash"),
        ("models/gemini-2.5-flash", None, "gemini", "gemini-2.5-flash"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", None, "bedrock", "claude-3-7-sonnet"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", None, "bedrock", "claude-sonnet-4-5"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", None, "bedrock", "claude-3-5-haiku"),
        ("claude-3-5-haiku-20241022", "bedrock", "bedrock", "claude-3-5-haiku"),
        # other decorations
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            None,
            "bedrock",
            "global.anthropic.claude-sonnet-4-5",
        ),
        ("amazon.nova-pro-v1:0", None, "bedrock", "nova-pro"),
        ("us.amazon.nova-micro-v1:0", None, "bedrock", "nova-micro"),
        ("gemini-2.5-flash-preview-09-2025", None, "gemini", "gemini-2.5-flash"),
        ("openai/gpt-4.1-mini", None, "openai", "gpt-4.1-mini"),
        ("gpt-4.1-2025-04-14", "openai", "openai", "gpt-4.1"),
        ("claude-opus-4-1-20250805", None, "anthropic", "claude-opus-4-1"),
        ("claude-haiku-4-5", "anthropic", "anthropic", "claude-haiku-4-5"),
    ],
)
def test_lookup_tolerates_provider_decorations(
    catalog: Catalog, model: str, provider: str | None, expected_provider: str, expected_id: str
) -> None:
    info = catalog.lookup(model, provider=provider)
    assert (info.provider, info.id) == (expected_provider, expected_id)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-5.6-mini",  # no such GPT-5.6 model: not priced as gpt-5.6
        "gpt-6.1-terra",  # its model page is not read yet: unpriced, not guessed
        "gpt-5.1-codex-max",  # must not be priced as gpt-5.1-codex
        "o4-mini-deep-research",  # must not be priced as o4-mini
        "claude-sonnet-4-7",  # must not be priced as claude-sonnet-4
        "gpt-5-codex",  # "codex" is a variant word; not guessed as gpt-5
        "totally-unknown",
    ],
)
def test_unknown_or_sibling_models_are_refused(catalog: Catalog, model: str) -> None:
    with pytest.raises(UnknownModelError) as caught:
        catalog.lookup(model)
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert repr(model) in message
    assert "overrides" in message and "models.yaml" in message


def test_longest_prefix_wins(catalog: Catalog) -> None:
    assert catalog.lookup("gpt-5-pro-2025-10-06").id == "gpt-5-pro"
    assert catalog.lookup("claude-3-7-sonnet-latest").id == "claude-3-7-sonnet"
    assert catalog.lookup("gemini-2.5-flash-lite-preview-06-17").id == "gemini-2.5-flash-lite"
    with pytest.raises(UnknownModelError):
        # "search" is a variant word: the search model is priced differently.
        catalog.lookup("gpt-4o-search-preview", provider="openai")


def test_unknown_provider_is_named(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError, match="provider 'cohere'"):
        catalog.lookup("command-r", provider="cohere")


def test_bedrock_regional_profiles_cost_ten_percent_more_than_global(catalog: Catalog) -> None:
    regional = catalog.lookup("us.anthropic.claude-sonnet-4-5-20250929-v1:0").prices
    global_ = catalog.lookup("global.anthropic.claude-sonnet-4-5-20250929-v1:0").prices
    assert regional.input == pytest.approx(global_.input * 1.1)
    assert regional.output == pytest.approx(global_.output * 1.1)
    assert regional.cache_read == pytest.approx((global_.cache_read or 0) * 1.1)
    assert regional.cache_write["5m"] == pytest.approx(global_.cache_write["5m"] * 1.1)


def test_anthropic_cache_prices_follow_documented_multipliers(catalog: Catalog) -> None:
    # 5m write = 1.25x input, 1h write = 2x input on every model; read = 0.1x input up to the
    # models whose pages list a lower read price (Opus 5.5 and Sonnet 5.5 0.05x, Haiku 5.5
    # 0.1x, Fable / Mythos 5.1 and 5.2 0.025x). The official table rounds Haiku 3 to whole cents
    # ($0.30 / $0.03), hence the tolerance.
    lower_read = {"claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1", "claude-mythos-5-1"}
    lower_read |= {"claude-fable-5-2", "claude-mythos-5-2"}
    for model_id, spec in catalog.providers["anthropic"].models.items():
        p = spec.prices
        assert p.cache_write["5m"] == pytest.approx(p.input * 1.25, abs=0.015), model_id
        assert p.cache_write["1h"] == pytest.approx(p.input * 2, abs=0.015), model_id
        if model_id in lower_read:
            assert p.cache_read is not None and p.cache_read < p.input * 0.1, model_id
        else:
            assert p.cache_read == pytest.approx(p.input * 0.1, abs=0.006), model_id


def test_every_entry_is_sane(catalog: Catalog) -> None:
    assert isinstance(catalog.source_date, date)
    assert catalog.currency == "USD"
    assert set(catalog.providers) == {"anthropic", "openai", "gemini", "bedrock"}
    for name, provider in catalog.providers.items():
        assert provider.source.strip(), name
        assert provider.models, name
        for model_id, spec in provider.models.items():
            p = spec.prices
            assert p.output >= p.input > 0, model_id
            if p.cache_read is not None:
                assert p.cache_read < p.input, model_id
            for ttl, write in p.cache_write.items():
                assert write >= p.input, (model_id, ttl)
            if provider.write_premium and p.cache_read is not None:
                assert provider.default_write_ttl in p.cache_write, model_id
            if spec.min_cacheable_tokens is not None:
                assert spec.min_cacheable_tokens >= 512, model_id  # Opus 5 / Fable 5: 512
    # Gemini explicit caches are billed for storage; every Gemini model must say how much.
    for model_id, spec in catalog.providers["gemini"].models.items():
        assert spec.prices.cache_storage_per_hour is not None, model_id


def test_documented_caching_rules(catalog: Catalog) -> None:
    assert catalog.lookup("claude-haiku-4-5").spec.min_cacheable_tokens == 4096
    assert catalog.lookup("claude-opus-4-5").spec.min_cacheable_tokens == 4096
    assert catalog.lookup("claude-sonnet-4-5").spec.min_cacheable_tokens == 1024
    assert catalog.lookup("claude-3-5-haiku", provider="anthropic").spec.min_cacheable_tokens == (2048)
    gpt = catalog.lookup("gpt-4o").spec
    assert (gpt.min_cacheable_tokens, gpt.cache_increment_tokens) == (1024, 128)
    assert catalog.lookup("gpt-4.1").spec.ttl_options == ["in_memory", "24h"]
    assert catalog.lookup("gpt-4o").spec.ttl_options == ["in_memory"]
    assert catalog.lookup("gpt-5.5").spec.ttl_options == ["24h"]
    assert catalog.lookup("gemini-2.5-flash").spec.min_cacheable_tokens == 1024
    assert catalog.lookup("gemini-2.5-pro").spec.min_cacheable_tokens == 4096


def test_long_context_tier_applies_above_threshold(catalog: Catalog) -> None:
    pro = catalog.lookup("gemini-2.5-pro")
    assert pro.prices_for(200_000).input == 1.25
    assert pro.prices_for(200_001).input == 2.50


def test_overrides_deep_merge_one_price(catalog: Catalog) -> None:
    custom = load_catalog(
        overrides={"providers": {"openai": {"models": {"gpt-4o": {"prices": {"output": 9.0}}}}}}
    )
    before, after = catalog.lookup("gpt-4o").prices, custom.lookup("gpt-4o").prices
    assert after.output == 9.0
    assert (after.input, after.cache_read) == (before.input, before.cache_read)
    # the packaged default is untouched
    assert load_catalog().lookup("gpt-4o").prices.output == 10.0


def test_override_file_adds_a_model(tmp_path: Path) -> None:
    extra = tmp_path / "prices.yaml"
    # Test-only figures: this checks the override mechanism, not any provider's price.
    extra.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "openai": {
                        "models": {
                            "gpt-5.6-sol": {
                                "default_write_ttl": "30m",
                                "prices": {
                                    "input": 2.0,
                                    "output": 8.0,
                                    "cache_read": 0.2,
                                    "cache_write": {"30m": 2.5},
                                },
                            }
                        }
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    info = load_catalog(overrides=extra).lookup("gpt-5.6-sol")
    assert (info.provider, info.default_write_ttl, info.write_premium) == ("openai", "30m", True)


def test_path_replaces_the_packaged_file(tmp_path: Path) -> None:
    small = tmp_path / "models.yaml"
    small.write_text(
        yaml.safe_dump(
            {
                "source_date": "2030-01-02",
                "providers": {
                    "acme": {
                        "source": "test fixture",
                        "write_premium": False,
                        "models": {"acme-1": {"prices": {"input": 1.0, "output": 1.0}}},
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    cat = load_catalog(small)
    assert cat.source_date == date(2030, 1, 2)
    assert cat.lookup("acme-1").source_date == date(2030, 1, 2)
    with pytest.raises(UnknownModelError):
        cat.lookup("gpt-4o")


def test_bad_catalog_is_a_validation_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "source_date: 2030-01-02\nproviders:\n  acme:\n    source: x\n    write_premium: false\n"
        "    models:\n      m: {prices: {input: -1, output: 1}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="input"):
        load_catalog(bad)


def test_data_file_ships_inside_the_package() -> None:
    text = resources.files("promptcache").joinpath("data/models.yaml").read_text("utf-8")
    assert "source_date" in text


def _entries() -> list[tuple[str, str]]:
    raw = load_catalog()
    return [(name, model_id) for name, p in raw.providers.items() for model_id in p.models]


@pytest.mark.parametrize(("provider", "model_id"), _entries())
def test_every_entry_cites_its_page_and_date(provider: str, model_id: str) -> None:
    """Issue 23: each catalog entry is dated and cites the page its figures come from, on the
    entry itself (a provider-wide note does not say which page priced which model)."""
    spec = load_catalog().providers[provider].models[model_id]
    assert spec.source is not None and spec.source.strip(), f"{provider}/{model_id}: no source"
    assert spec.source_date is not None, f"{provider}/{model_id}: no source_date"
    assert spec.source_date <= date.today(), f"{provider}/{model_id}: dated in the future"
    info = load_catalog().lookup(model_id, provider=provider)
    assert (info.source, info.source_date) == (spec.source, spec.source_date)


def test_gpt_5_6_and_later_follow_the_prompt_caching_guide(catalog: Catalog) -> None:
    """developers.openai.com/api/docs/guides/prompt-caching, "Summary of model differences":
    GPT-5.6 and later take explicit breakpoints, cache from 1,024 visible tokens at the exact
    boundary, bill writes at 1.25x and reads at 0.1x the uncached input rate, ttl "30m"."""
    for model_id in ("gpt-5.6", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6.2-sol"):
        info = catalog.lookup(model_id, provider="openai")
        spec, p = info.spec, info.prices
        assert "explicit" in spec.ttl_options and "30m" in spec.ttl_options, model_id
        assert (spec.min_cacheable_tokens, spec.cache_increment_tokens) == (1024, None), model_id
        assert info.write_premium and info.default_write_ttl == "30m", model_id
        assert p.cache_write["30m"] == pytest.approx(p.input * 1.25), model_id
        assert p.cache_read == pytest.approx(p.input * 0.1 if model_id != "gpt-6.2-sol" else 0.10)
        tier = info.prices_for(272_001)
        assert tier.input == pytest.approx(p.input * 2) and tier.output == pytest.approx(p.output * 1.5)
        assert tier.cache_write["30m"] == pytest.approx(p.cache_write["30m"] * 2), model_id
    # The alias prices as Sol; older models keep no write premium.
    assert catalog.lookup("gpt-5.6").prices == catalog.lookup("gpt-5.6-sol").prices
    assert not catalog.lookup("gpt-5.5").write_premium
    assert "explicit" not in catalog.lookup("gpt-5.5").spec.ttl_options
