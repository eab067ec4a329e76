"""Reset stores: generations never appear to go backwards to a running process.

Issue 19, item 4 (reset stores). ``FLUSHDB``, a Redis restart without persistence, or a
SQLite cache file deleted or replaced start the tag generations again from 0, so the
numbers a process has seen come back meaning something else. Every shared tier keeps a
store epoch returned with every generation read (and carried on the bus); a process that
sees a new one drops its L1 and what it knew of generations. These tests use a tag
invalidated once before the reset and once after: the same number, 1, on both sides, the
case a comparison of numbers alone cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from promptcache.invalidation import GenerationCache, Generations, InvalidationEvent
from promptcache.tiers import SQLiteStore, TieredStore, sqlite
from promptcache.tiers.redis import RedisStore

from .conftest import RedisServer, key_for, wait_until

TAG = "reservation:ABC123"


def _cache_under_gen_1(store: TieredStore, key: str) -> None:
    store.invalidate(TAG)  # generation 1 in this store epoch
    store.get_or_compute(key, lambda: b"before", tenant="t", entry_type="tool_output", tags=[TAG])
    assert store.flush()
    hit = store.lookup(key, tenant="t")
    # stamped with generation 1 of the tag's stored name (tags are stored as keyed digests)
    assert hit is not None and hit.tier == "l1" and 1 in hit.entry.tags.values()


@pytest.fixture
def two_routers(redis_server: RedisServer, ns: str) -> Iterator[tuple[TieredStore, TieredStore]]:
    """Two routers on one Redis namespace, each with its own pub/sub subscription."""
    a = TieredStore.from_redis(redis_server.url, namespace=ns)
    b = TieredStore.from_redis(redis_server.url, namespace=ns)
    for s in (a, b):
        assert s.bus.wait_subscribed(5.0)  # type: ignore[attr-defined]
    yield a, b
    a.close()
    b.close()


@pytest.mark.redis
def test_flushdb_then_invalidate_here_drops_the_old_l1_copy(
    two_routers: tuple[TieredStore, TieredStore], redis_server: RedisServer
) -> None:
    store, _ = two_routers
    key = key_for("t", "flush-here")
    _cache_under_gen_1(store, key)
    redis.Redis.from_url(redis_server.url).flushdb()
    assert store.invalidate(TAG) == 1  # the counters restarted: the same number as before
    assert store.lookup(key, tenant="t") is None, "an entry invalidated after FLUSHDB was served"
    assert store.stats().epoch_changes == 1


@pytest.mark.redis
def test_a_late_event_of_the_reset_store_does_not_bring_its_epoch_back(
    two_routers: tuple[TieredStore, TieredStore], redis_server: RedisServer
) -> None:
    # A bus message published before the reset and delivered after it (a loaded machine
    # delivered one late) carries the old epoch: taking it back flipped this process to the
    # reset store and counted the reset three times.
    store, other = two_routers
    _cache_under_gen_1(store, key_for("t", "late"))
    old = store.generations.epoch
    redis.Redis.from_url(redis_server.url).flushdb()
    assert store.invalidate(TAG) == 1
    new = store.generations.epoch
    assert old is not None and new not in (None, old) and store.stats().epoch_changes == 1
    other.bus.publish(InvalidationEvent(kind="tag", tag="late-tag", gen=7, origin="late", epoch=old))
    # One channel keeps its order: once this later event is in, the late one was handled.
    other.bus.publish(InvalidationEvent(kind="tag", tag="sentinel", gen=5, origin="late", epoch=new))
    assert wait_until(lambda: store.generations.known("sentinel") == 5, timeout=5)
    assert store.generations.epoch == new
    assert store.generations.known("late-tag") == 0
    assert store.stats().epoch_changes == 1


@pytest.mark.redis
def test_flushdb_then_invalidate_elsewhere_reaches_this_process(
    two_routers: tuple[TieredStore, TieredStore], redis_server: RedisServer
) -> None:
    store, other = two_routers
    key = key_for("t", "flush-there")
    _cache_under_gen_1(store, key)
    other.current_generations([TAG], tenant="t", refresh=True)  # the other router knows the old epoch too
    redis.Redis.from_url(redis_server.url).flushdb()
    assert other.invalidate(TAG) == 1
    # the bus carries the new epoch: this process drops its copy on delivery
    assert wait_until(lambda: store.lookup(key, tenant="t") is None, timeout=5)
    assert store.stats().epoch_changes == 1
    # and it works on afterwards: a value computed now is stored and served under the new epoch
    store.get_or_compute(key, lambda: b"after", tenant="t", entry_type="tool_output", tags=[TAG])
    assert store.flush()
    hit = other.lookup(key, tenant="t")
    assert hit is not None and hit.entry.payload == b"after"


@pytest.mark.redis
async def test_flushdb_asyncio(redis_server: RedisServer, ns: str) -> None:
    store = TieredStore.from_redis(redis_server.url, namespace=ns)
    key = key_for("t", "flush-async")

    async def before() -> bytes:
        return b"before"

    await store.ainvalidate(TAG)
    await store.aget_or_compute(key, before, tenant="t", entry_type="tool_output", tags=[TAG])
    assert (await store.alookup(key, tenant="t")) is not None
    await redis.asyncio.Redis.from_url(redis_server.url).flushdb()
    assert await store.ainvalidate(TAG) == 1
    assert (await store.alookup(key, tenant="t")) is None
    await store.aclose()


@pytest.mark.redis
def test_redis_epoch_is_written_once_and_again_after_a_reset(redis_server: RedisServer, ns: str) -> None:
    l2 = RedisStore(redis_server.url, namespace=ns)
    first = l2.tag_generations([TAG])
    assert isinstance(first, Generations) and first == {TAG: 0} and first.epoch
    assert l2.tag_generations([TAG]).epoch == first.epoch  # stable while the store lives
    l2.client.flushdb()
    assert l2.tag_generations([TAG]).epoch not in (None, first.epoch)
    l2.close()


def test_sqlite_file_replaced_then_invalidate_drops_the_old_l1_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "_REOPEN_CHECK_S", 0.0)  # notice the new file on the next statement
    store = TieredStore.default(tmp_path)
    key = key_for("t", "sqlite-replaced")
    _cache_under_gen_1(store, key)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'promptcache.sqlite3'}{suffix}").unlink(missing_ok=True)
    assert store.invalidate(TAG) == 1  # a new file: its counters start again
    assert store.lookup(key, tenant="t") is None, "an entry invalidated in the new file was served"
    assert store.stats().epoch_changes == 1
    store.close()


def test_sqlite_epoch_is_shared_by_connections_and_new_with_a_new_file(tmp_path: Path) -> None:
    a = SQLiteStore(tmp_path / "c.sqlite3")
    b = SQLiteStore(tmp_path / "c.sqlite3")
    ea = a.tag_generations([TAG]).epoch
    assert ea and b.tag_generations([TAG]).epoch == ea
    a.close()
    b.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'c.sqlite3'}{suffix}").unlink(missing_ok=True)
    c = SQLiteStore(tmp_path / "c.sqlite3")
    assert c.tag_generations([]).epoch not in (None, ea)
    c.close()


def test_generation_cache_forgets_everything_on_a_new_epoch() -> None:
    gens = GenerationCache()
    assert not gens.adopt_epoch("e1")  # the first epoch seen is not a change
    gens.observe({TAG: 5})
    assert not gens.adopt_epoch("e1") and gens.known(TAG) == 5
    assert not gens.adopt_epoch(None)  # a read without an epoch says nothing
    assert gens.adopt_epoch("e2")
    assert gens.known(TAG) == 0 and gens.epoch == "e2"
