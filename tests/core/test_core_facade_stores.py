"""PromptCache opens its store lazily and exposes the artifact caches and invalidation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.artifacts import ToolSpec, open_store

READ = ToolSpec(
    name="get_reservation_details", side_effect="read_only", tags=("reservation:{reservation_id}",)
)
WRITE = ToolSpec(
    name="update_reservation_baggages",
    side_effect="idempotent_write",
    invalidates=("reservation:{reservation_id}",),
)


class Db:
    def __init__(self) -> None:
        self.version = 1
        self.reads = 0

    def get(self, reservation_id: str) -> dict[str, Any]:
        self.reads += 1
        return {"id": reservation_id, "version": self.version}

    def update(self, reservation_id: str, bags: int) -> dict[str, Any]:
        self.version += 1
        return {"id": reservation_id, "bags": bags}


def test_store_is_opened_lazily_in_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path))
    cache = PromptCache()
    cache.prepare_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, format="openai-chat"
    )
    assert list(tmp_path.iterdir()) == []  # prompt rewriting needs no store
    db = Db()
    assert not cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t").lookup.hit
    cache.store.flush()
    assert any(p.name.endswith(".sqlite3") for p in tmp_path.iterdir())
    cache.close()


def test_tool_cache_hit_write_invalidates_and_tenants_do_not_share(tmp_path: Path) -> None:
    cache = PromptCache(store=str(tmp_path))
    db = Db()
    first = cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="acme")
    again = cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="acme")
    assert (first.lookup.hit, again.lookup.hit, db.reads) == (False, True, 1)
    other = cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="globex")
    assert not other.lookup.hit and db.reads == 2
    cache.tools.call(WRITE, {"reservation_id": "A", "bags": 2}, db.update, tenant="acme")
    fresh = cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="acme")
    assert not fresh.lookup.hit and fresh.value["version"] == 2
    cache.invalidate("tool:get_reservation_details")
    assert not cache.tools.call(READ, {"reservation_id": "A"}, db.get, tenant="acme").lookup.hit
    cache.close()


def test_a_store_passed_in_is_used_and_left_open(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    cache = PromptCache(store=store)
    assert cache.store is store
    cache.close()
    db = Db()
    assert not cache.tools.call(READ, {"reservation_id": "B"}, db.get, tenant="t").lookup.hit  # still usable
    store.close()
