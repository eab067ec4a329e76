"""An unusable cache location never fails a call (issue 19, item 6).

A file where the directory should be, a parent that is a file and ``/proc`` fail for root too,
so they are tested here directly, through ``PromptCache(store=...)`` and ``$PROMPTCACHE_CACHE_DIR``,
sync and asyncio. A read-only mount is tested on a real read-only tmpfs in a private mount
namespace in ``tests/reliability/test_rel_locations.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
from promptcache.tiers import FileBlobStore, LocationUnusable, SQLiteStore

READ = ToolSpec(name="get_reservation", side_effect="read_only", tags=["reservation:{rid}"])
WRITE = ToolSpec(name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{rid}"])


def _file_in_the_way(tmp: Path) -> Path:
    (tmp / "a-file").write_text("not a directory\n")
    return tmp / "a-file"


def _parent_is_a_file(tmp: Path) -> Path:
    return _file_in_the_way(tmp) / "cache"


def _proc(tmp: Path) -> Path:
    return Path(f"/proc/promptcache-{uuid.uuid4().hex[:8]}")


LOCATIONS: dict[str, Callable[[Path], Path]] = {
    "file_in_the_way": _file_in_the_way,
    "parent_is_a_file": _parent_is_a_file,
    "proc": _proc,
}


def _cache(location: Path, via: str, monkeypatch: pytest.MonkeyPatch) -> PromptCache:
    if via == "env":
        monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(location))
        return PromptCache(record_stats=False)
    # breaker_cooldown_s=0: every call probes the tier again, so "one warning" is not an
    # artefact of the circuit staying open
    return PromptCache(store=open_store(str(location), breaker_cooldown_s=0.0), record_stats=False)


class Db:
    def __init__(self) -> None:
        self.version = 1
        self.reads = 0

    def get(self, rid: str) -> dict[str, Any]:
        self.reads += 1
        return {"rid": rid, "version": self.version}

    def update(self, rid: str) -> str:
        self.version += 1
        return "ok"


@pytest.mark.parametrize("via", ["store", "env"])
@pytest.mark.parametrize("where", sorted(LOCATIONS))
def test_calls_degrade_to_uncached_count_the_skip_and_warn_once(
    where: str, via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    location = LOCATIONS[where](tmp_path)
    caplog.set_level(logging.DEBUG, logger="promptcache")
    cache = _cache(location, via, monkeypatch)
    db = Db()
    for _ in range(5):
        assert cache.tools.call(READ, {"rid": "A"}, db.get, tenant="acme").value["version"] == 1

    async def areads() -> list[int]:
        async def aget(rid: str) -> dict[str, Any]:
            return db.get(rid)

        return [
            (await cache.tools.acall(READ, {"rid": "B"}, aget, tenant="acme")).value["version"]
            for _ in range(5)
        ]

    assert asyncio.run(areads()) == [1] * 5
    docs = cache.retrieval.retrieve(
        "bags?",
        lambda q: [{"id": "bags", "text": "one bag"}],
        tenant="acme",
        retriever=RetrieverSpec(name="kb"),
    ).value
    assert [d["id"] for d in docs] == ["bags"]
    cache.store.flush()
    assert cache.store.stats().tiers["l2"].tier_skipped >= 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert str(location) in message and "PROMPTCACHE_CACHE_DIR" in message  # where, and the fix
    cache.close()


def test_a_write_whose_invalidation_cannot_be_recorded_leaves_no_stale_value_here(tmp_path: Path) -> None:
    cache = PromptCache(store=str(_file_in_the_way(tmp_path)), record_stats=False)
    db = Db()
    assert cache.tools.call(READ, {"rid": "A"}, db.get, tenant="acme").value["version"] == 1
    wrote = cache.tools.call(WRITE, {"rid": "A"}, db.update, tenant="acme")
    assert wrote.value == "ok" and wrote.lookup.invalidation_failed == ("reservation:A",)
    after = cache.tools.call(READ, {"rid": "A"}, db.get, tenant="acme")
    assert after.value["version"] == 2 and not after.lookup.hit
    cache.close()


def test_a_location_that_becomes_usable_is_used_and_a_new_outage_warns_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    in_the_way = _file_in_the_way(tmp_path)
    store = open_store(str(in_the_way), breaker_cooldown_s=0.0)
    caplog.set_level(logging.WARNING, logger="promptcache")
    k = "a" * 64
    store.put(k, b"v", tenant="t", entry_type="metadata")
    store.flush()
    assert store.stats().tiers["l2"].tier_skipped >= 1
    in_the_way.unlink()  # the operator fixes it: the directory can now be created
    store.put(k, b"v2", tenant="t", entry_type="metadata")
    store.flush()
    assert (in_the_way / "promptcache.sqlite3").exists()
    store.l1.clear()
    assert store.get(k, tenant="t") is not None and store.get(k, tenant="t").payload == b"v2"  # type: ignore[union-attr]
    assert len(caplog.records) == 1
    store.close()


def test_the_tiers_themselves_open_and_say_what_is_wrong_on_use(tmp_path: Path) -> None:
    where = _parent_is_a_file(tmp_path)
    l2 = SQLiteStore(where / "promptcache.sqlite3")  # constructing never raises
    with pytest.raises(LocationUnusable, match="PROMPTCACHE_CACHE_DIR") as err:
        l2.get("a" * 64)
    assert str(where) in str(err.value) and "NotADirectoryError" in str(err.value)
    assert l2.stats().errors >= 1
    blobs = FileBlobStore(where / "blobs")
    with pytest.raises(LocationUnusable, match="blobs"):
        blobs.put_blob(b"x")
