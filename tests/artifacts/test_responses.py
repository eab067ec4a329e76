"""ResponseCache: eligibility by policy (with reasons), full-request keys, tenants, secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from promptcache.artifacts import ResponseCache
from promptcache.policy import Policy
from promptcache.tiers import TieredStore

from .conftest import StoreFactory

SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def request(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "response_format": SCHEMA,
        "messages": [{"role": "system", "content": "Classify."}, {"role": "user", "content": "late bag"}],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request(temperature=None), "no temperature"),
        (request(temperature=0.7), "temperature 0.7 above"),
        (request(response_format=None), "no structured output schema"),
        (request(response_format={"type": "json_object"}), "no structured output schema"),
        (request(tools=[{"type": "function", "function": {"name": "f"}}]), "tools offered"),
        (request(stream=True), "streamed"),
        (request(n=3), "n > 1"),
        (
            request(messages=[{"role": "user", "content": "key sk-ant-api03-abcdefghijklmnopqrstuvwx"}]),
            "secret",
        ),
        (request(messages=[{"role": "user", "content": "mail ann@example.com"}]), "pii.email"),
    ],
)
def test_ineligible_requests_are_refused_with_the_reason(req: dict[str, Any], reason: str) -> None:
    rc = ResponseCache(TieredStore())
    assert not rc.check(req).allowed and reason in rc.check(req).reason
    n = []
    for _ in range(2):
        out = rc.call(req, lambda r: n.append(1) or {"label": "x"}, tenant="t")
        assert not out.lookup.hit and reason in out.lookup.why
    assert len(n) == 2 and rc.stats().bypassed == 2


def test_policy_switches_widen_eligibility() -> None:
    policy = Policy(
        response_cache={"max_temperature": 1.0, "require_structured_output": False, "allow_with_tools": True}
    )
    rc = ResponseCache(TieredStore(), policy)
    assert rc.check(request(temperature=0.7, response_format=None, tools=[{"name": "f"}])).allowed


@pytest.mark.parametrize(
    "shape",
    [
        {"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}},  # OpenAI Responses
        {"output_format": {"type": "json_schema", "schema": {}}},  # Anthropic
        {"generationConfig": {"temperature": 0, "responseSchema": {"type": "OBJECT"}}},  # Gemini
    ],
)
def test_schema_shapes_of_other_providers(shape: dict[str, Any]) -> None:
    req = {"model": "m", "messages": [], **shape}
    if "generationConfig" not in shape:
        req["temperature"] = 0
    assert ResponseCache(TieredStore()).check(req).allowed


def test_full_request_key_and_tenants(shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]]) -> None:
    make, _ = shared_l2
    rc = ResponseCache(make(max_staleness_s=5.0))
    n = []

    def model(r: Any) -> dict[str, Any]:
        n.append(1)
        return {"label": "baggage", "n": len(n)}

    first = rc.call(request(), model, tenant="t1")
    assert not first.lookup.hit and first.lookup.stored and first.trust == "model"
    hit = rc.call(request(prompt_cache_key="abc", stream_options=None), model, tenant="t1")  # transport only
    assert hit.lookup.hit and hit.value == {"label": "baggage", "n": 1}
    assert not rc.call(request(), model, tenant="t2").lookup.hit
    assert not rc.call(request(temperature=0.1), model, tenant="t1").lookup.hit
    assert not rc.call(request(max_tokens=10), model, tenant="t1").lookup.hit
    assert len(n) == 4


def test_secret_in_a_response_is_never_written(
    shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]],
) -> None:
    make, raw = shared_l2
    store = make()
    rc = ResponseCache(store)
    leaked = {"text": "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."}
    out = rc.call(request(), lambda r: leaked, tenant="t")
    assert out.value == leaked and not out.lookup.stored and rc.stats().refused_secret == 1
    rc.call(request(temperature=0.1), lambda r: {"ok": 1}, tenant="t")
    store.flush()
    blobs = raw()
    assert blobs and not any(b"PRIVATE KEY" in b for b in blobs)


async def test_async_twin() -> None:
    rc = ResponseCache(TieredStore())

    async def model(r: Any) -> dict[str, Any]:
        return {"label": "x"}

    assert (await rc.acall(request(), model, tenant="t")).lookup.stored
    assert (await rc.acall(request(), model, tenant="t")).lookup.hit
