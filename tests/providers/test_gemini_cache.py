"""Gemini explicit cached contents: create, reuse, refresh, expire, delete, and the restriction.

The create/reuse/delete sequence replays pydantic-ai's real recording
(``gemini__pydantic_ai__cached_content.yaml``) with vcrpy over httpx, matching method, path
and JSON body, so every request promptcache makes is byte-for-byte (as JSON) the recorded one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptcache.pricing import gemini_storage_cost
from promptcache.providers.gemini_cache import GeminiCacheManager, HttpxGeminiTransport
from promptcache.providers.usage import usage_from_response

from ._replay import replay, request_bodies

CASSETTE = "gemini__pydantic_ai__cached_content.yaml"
BASE = "https://generativelanguage.googleapis.com/v1beta"


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class RecordingTransport:
    """A transport that answers like the API and records what it was asked (no network)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.n = 0

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", copy.deepcopy(body)))
        self.n += 1
        return {
            "name": f"cachedContents/c{self.n}",
            "model": body["model"],
            "usageMetadata": {"totalTokenCount": 5000},
        }

    def update_ttl(self, name: str, ttl: str) -> dict[str, Any]:
        self.calls.append(("update_ttl", (name, ttl)))
        return {"name": name}

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))


def _recorded() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    create, gen1, gen2, _delete = request_bodies(CASSETTE)
    return create, gen1, gen2


def _caller_body(question: str) -> dict[str, Any]:
    """What the caller would send without promptcache: system, document, question."""
    create, gen1, _ = _recorded()
    return {
        "systemInstruction": create["systemInstruction"],
        "contents": [*create["contents"], {"parts": [{"text": question}], "role": "user"}],
        "generationConfig": gen1["generationConfig"],
    }


def test_create_reuse_delete_replayed_with_exact_bodies(tmp_path: Path) -> None:
    _, gen1, gen2 = _recorded()
    clock = Clock()
    with replay(CASSETTE, tmp_path), httpx.Client() as http:
        manager = GeminiCacheManager(HttpxGeminiTransport(http), ttl_s=120, clock=clock)
        p1 = manager.prepare(
            _caller_body("What is the capital of France?"), tenant="t", model="gemini-2.5-flash"
        )
        assert p1.created and p1.handle is not None
        assert p1.handle.name == "cachedContents/7lf5him5ev4iemi1yjv2gwli5bhpz3yidzejwllo"
        assert p1.handle.tokens == 3512
        assert p1.create_usage is not None and p1.create_usage.cache_write_tokens == 3512
        assert p1.body == gen1  # systemInstruction moved into the cache, document too
        r1 = http.post(f"{BASE}/models/gemini-2.5-flash:generateContent", json=p1.body).json()
        assert usage_from_response("gemini", r1).cache_read_tokens == 3512

        clock.t += 30
        p2 = manager.prepare(
            _caller_body("Say the capital one more time."), tenant="t", model="gemini-2.5-flash"
        )
        assert not p2.created and p2.handle is p1.handle
        assert p2.body == gen2
        r2 = http.post(f"{BASE}/models/gemini-2.5-flash:generateContent", json=p2.body).json()
        assert usage_from_response("gemini", r2).cache_read_tokens == 3512

        clock.t += 30
        assert manager.invalidate(tenant="t") == [p1.handle.name]
    assert manager.handles() == []
    # Stored 60 s (created at 1000, deleted at 1060), not the 120 s asked for.
    assert p1.handle.storage_seconds(clock.t + 500) == 60
    assert manager.storage_cost(clock.t + 500) == pytest.approx(
        gemini_storage_cost("gemini-2.5-flash", 3512, 60)
    )


def test_create_body_is_the_recorded_one() -> None:
    transport = RecordingTransport()
    manager = GeminiCacheManager(transport, ttl_s=120, clock=Clock())
    manager.prepare(_caller_body("q"), tenant="t", model="models/gemini-2.5-flash")
    create, _, _ = _recorded()
    assert transport.calls == [("create", create)]


def _tool_body(question: str, tools: list[Any] | None = None) -> dict[str, Any]:
    body = _caller_body(question)
    body["tools"] = tools or [
        {"functionDeclarations": [{"name": "lookup", "description": "Look a city up."}]}
    ]
    body["toolConfig"] = {"functionCallingConfig": {"mode": "AUTO"}}
    return body


def test_system_instruction_tools_and_tool_config_move_into_the_cache() -> None:
    transport = RecordingTransport()
    manager = GeminiCacheManager(transport, clock=Clock())
    body = _tool_body("q1")
    p = manager.prepare(body, tenant="t", model="gemini-2.5-flash")
    ((kind, created),) = transport.calls
    assert kind == "create"
    assert created == {
        "model": "models/gemini-2.5-flash",
        "systemInstruction": body["systemInstruction"],
        "tools": body["tools"],
        "toolConfig": body["toolConfig"],
        "contents": body["contents"][:1],
        "ttl": "3600s",
    }
    assert p.body == {
        "generationConfig": body["generationConfig"],
        "cachedContent": "cachedContents/c1",
        "contents": [{"parts": [{"text": "q1"}], "role": "user"}],
    }
    assert not {"systemInstruction", "tools", "toolConfig"} & set(p.body)
    assert "tools" in body  # the caller's body is untouched


def test_other_tools_or_tenant_get_their_own_cache() -> None:
    transport = RecordingTransport()
    manager = GeminiCacheManager(transport, clock=Clock())
    a = manager.prepare(_tool_body("q1"), tenant="t", model="gemini-2.5-flash")
    b = manager.prepare(_tool_body("q2"), tenant="t", model="gemini-2.5-flash")
    other_tools = [{"functionDeclarations": [{"name": "weather", "description": "Weather."}]}]
    c = manager.prepare(_tool_body("q1", other_tools), tenant="t", model="gemini-2.5-flash")
    d = manager.prepare(_tool_body("q1"), tenant="u", model="gemini-2.5-flash")
    names = [p.body["cachedContent"] for p in (a, b, c, d)]
    assert names == ["cachedContents/c1", "cachedContents/c1", "cachedContents/c2", "cachedContents/c3"]
    assert [k for k, _ in transport.calls] == ["create"] * 3


def test_below_minimum_stays_implicit() -> None:
    transport = RecordingTransport()
    manager = GeminiCacheManager(transport, clock=Clock())
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
    }
    p = manager.prepare(body, tenant="t", model="gemini-2.5-flash")
    assert p.body == body and p.handle is None and transport.calls == []
    assert "below the 1024-token minimum" in p.notes[0]


def test_expiry_recreates_and_refresh_extends() -> None:
    clock = Clock()
    transport = RecordingTransport()
    manager = GeminiCacheManager(transport, ttl_s=600, clock=clock)
    first = manager.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash").handle
    clock.t += 596  # inside the 5 s safety margin: treated as gone
    second = manager.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash").handle
    assert first is not None and second is not None and second.name != first.name
    assert [k for k, _ in transport.calls] == ["create", "create"]
    assert first.storage_seconds(clock.t + 10_000) == 600  # lived until it expired

    clock2 = Clock()
    t2 = RecordingTransport()
    refreshing = GeminiCacheManager(t2, ttl_s=600, refresh_margin_s=120, clock=clock2)
    h = refreshing.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash").handle
    assert h is not None
    clock2.t += 400  # 200 s left: no refresh yet
    assert not refreshing.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash").refreshed
    clock2.t += 100  # 100 s left: refresh back to the full TTL
    p = refreshing.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash")
    assert p.refreshed and p.handle is h and h.expires_at == clock2.t + 600
    assert t2.calls[1:] == [("update_ttl", ("cachedContents/c1", "600s"))]


def test_invalidate_by_tag_and_failed_delete_still_drops() -> None:
    class Flaky(RecordingTransport):
        def delete(self, name: str) -> None:
            super().delete(name)
            raise RuntimeError("404 not found")

    transport = Flaky()
    manager = GeminiCacheManager(transport, clock=Clock())
    manager.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash", tags=["kb:1"])
    manager.prepare(_tool_body("q"), tenant="t", model="gemini-2.5-flash", tags=["kb:2"])
    assert manager.invalidate(tag="kb:1") == ["cachedContents/c1"]
    assert [h.name for h in manager.handles()] == ["cachedContents/c2"]
    p = manager.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash")
    assert p.created and p.body["cachedContent"] == "cachedContents/c3"


def test_caller_cached_content_and_missing_tenant() -> None:
    manager = GeminiCacheManager(RecordingTransport(), clock=Clock())
    body = {"cachedContent": "cachedContents/mine", "contents": [{"role": "user", "parts": [{"text": "q"}]}]}
    assert manager.prepare(body, tenant="t", model="gemini-2.5-flash").body == body
    with pytest.raises(ValueError, match="tenant"):
        manager.prepare(body, tenant="", model="gemini-2.5-flash")


def test_prompt_cache_invalidate_also_deletes_gemini_caches(tmp_path: Path) -> None:
    from promptcache import PromptCache

    cache = PromptCache(store=str(tmp_path))
    transport = RecordingTransport()
    manager = cache.gemini_caches(transport, clock=Clock())
    manager.prepare(_caller_body("q"), tenant="t", model="gemini-2.5-flash", tags=["kb:1"])
    manager.prepare(_tool_body("q"), tenant="t", model="gemini-2.5-flash", tags=["kb:2"])
    cache.invalidate("kb:1")
    assert ("delete", "cachedContents/c1") in transport.calls
    assert [h.name for h in manager.handles()] == ["cachedContents/c2"]
    cache.close()
