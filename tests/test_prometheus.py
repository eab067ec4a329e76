"""Prometheus exporter: the same figures, labelled, scraped over loopback HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from promptcache import telemetry
from promptcache.artifacts import ToolSpec
from promptcache.engine import PromptCache
from promptcache.pseudonym import tenant_label as label_of
from promptcache.telemetry.prometheus import start_http_server
from promptcache.usage import CacheUsage


@pytest.fixture
def served() -> Iterator[tuple[Any, int]]:
    exporter, server = start_http_server(0)
    try:
        yield exporter, server.server_port
    finally:
        exporter.uninstall()
        server.shutdown()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_shows_the_figures_per_label(served: tuple[Any, int]) -> None:
    _exporter, port = served
    cache = telemetry.instrument(PromptCache(store="memory://"))
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}],
    }
    with telemetry.labels(agent="triage"):
        for _ in range(2):
            cache.prepare_request(body, format="openai-chat", tenant="acme")
        cache.record_usage(
            CacheUsage(
                provider="openai", model="gpt-4o", input_tokens=1500, cache_read_tokens=1024, output_tokens=7
            ),
            tenant="acme",
        )
        spec = ToolSpec(name="lookup", side_effect="read_only")
        for _ in range(3):
            cache.tools.call(spec, {"q": "x"}, lambda q: "y", tenant="acme")
        cache.tools.call(ToolSpec(name="send_mail"), {"to": "a"}, lambda to: "ok", tenant="acme")
    with telemetry.provider_call(provider="openai", model="gpt-4o", tenant="acme", streaming=True) as call:
        call.first_chunk()
        call.set_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=10, cache_read_tokens=0))

    m = _scrape(port)
    who = (("agent", "triage"), ("model", "gpt-4o"), ("tenant", label_of("acme")))  # keyed hash

    def get(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted((*who, *labels.items()))))]

    assert get("promptcache_tokens_total", kind="input") == 1500
    assert get("promptcache_tokens_total", kind="cache_read") == 1024
    assert get("promptcache_tokens_total", kind="output") == 7
    assert get("promptcache_prepare_requests_total", prefix_changed="true") == 1  # first of its family
    assert get("promptcache_prepare_requests_total", prefix_changed="false") == 1
    assert get("promptcache_prefix_misses_total", reason="first_request") == 1
    assert get("promptcache_cost_usd_total", kind="avoided") > 0

    art = (("agent", "triage"), ("entry_type", "tool_output"), ("tenant", label_of("acme")))
    assert m[("promptcache_lookups_total", tuple(sorted((*art, ("result", "hit"), ("tier", "l1")))))] == 2
    assert m[("promptcache_lookups_total", tuple(sorted((*art, ("result", "miss"), ("tier", "")))))] == 1
    assert m[("promptcache_lookups_total", tuple(sorted((*art, ("result", "denied"), ("tier", "")))))] == 1
    reason = ("reason", "side_effect")  # the LookupReason value, not the lookup's words
    assert m[("promptcache_policy_denials_total", tuple(sorted((*art, reason))))] == 1
    assert m[("promptcache_lookup_seconds_count", (("entry_type", "tool_output"), ("tier", "l1")))] == 2
    assert m[("promptcache_write_seconds_count", (("entry_type", "tool_output"),))] == 1
    ttft = (("model", "gpt-4o"), ("provider", "openai"), ("provider_cache_hit", "false"))
    assert m[("promptcache_time_to_first_token_seconds_count", ttft)] == 1


def test_aggregated_tenants_and_uninstalled_exporter(served: tuple[Any, int]) -> None:
    from promptcache.telemetry.prometheus import PrometheusExporter

    quiet = PrometheusExporter(tenant_label=False).install()
    _exporter, port = served
    cache = telemetry.instrument(PromptCache())
    cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=5), tenant="secret-tenant")
    quiet.uninstall()
    cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=5), tenant="secret-tenant")
    from prometheus_client import generate_latest

    text = generate_latest(quiet.registry).decode()
    assert "secret-tenant" not in text and 'tenant="*"' in text
    assert 'promptcache_tokens_total{agent="",kind="input",model="gpt-4o",tenant="*"} 5.0' in text
    assert (
        _scrape(port)[
            (
                "promptcache_tokens_total",
                (
                    ("agent", ""),
                    ("kind", "input"),
                    ("model", "gpt-4o"),
                    ("tenant", label_of("secret-tenant")),
                ),
            )
        ]
        == 10
    )
