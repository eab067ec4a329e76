"""PromptCache passes its catalog to hint placement and delegates prewarm."""

from __future__ import annotations

import json
from typing import Any

from promptcache import PromptCache, load_catalog
from promptcache.lab.bundled import AGENTS

DECODED = AGENTS.parent / "decoded"


def _anthropic_body() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": (AGENTS / "tau_bench_airline_system_prompt.md").read_text(),
        "messages": [{"role": "user", "content": "Hi, I want to change my flight."}],
    }


def _markers(body: dict[str, Any]) -> int:
    return json.dumps(body).count('"cache_control"')


def test_catalog_override_reaches_hint_placement() -> None:
    body = _anthropic_body()
    assert _markers(PromptCache().prepare_request(body, format="anthropic-messages").body) >= 1
    # The same model with a minimum above this ~1.5k-token prompt: no breakpoint is worth placing.
    huge = load_catalog(
        overrides={
            "providers": {"anthropic": {"models": {"claude-sonnet-4-5": {"min_cacheable_tokens": 100_000}}}}
        }
    )
    prepared = PromptCache(catalog=huge).prepare_request(body, format="anthropic-messages")
    assert _markers(prepared.body) == 0
    assert any("minimum" in d for d in prepared.plan.decisions)


def test_prewarm_sends_the_minimal_request_and_prices_the_write() -> None:
    recorded = json.loads((DECODED / "anthropic__pydantic_ai__cache_messages_real_api.json").read_text())
    response = recorded[0]["response_body"]  # a real cache-write response (1111 tokens written)
    sent: list[dict[str, Any]] = []

    def send(b: dict[str, Any]) -> dict[str, Any]:
        sent.append(b)
        return dict(response)

    report = PromptCache().prewarm(_anthropic_body(), format="anthropic-messages", send=send, tenant="acme")
    assert len(sent) == 1 and sent[0]["max_tokens"] == 0
    assert _markers(sent[0]) >= 1
    assert report.usage is not None and report.usage.cache_write_tokens == 1111
    assert report.cost is not None and report.cost.total > 0
