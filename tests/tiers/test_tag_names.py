"""Issue 19, items 2 and 3: tag values are stored as keyed digests, tags belong to a tenant.

Each behaviour runs on both shared tiers (a real SQLite file, a real redis-server), in the
sync and the asyncio form:

* no tag value (a social security number, a mail address) is found in clear anywhere in
  the store after writes and invalidations: not in the SQLite file, not in a Redis key name
  or value; the stored names keep a readable prefix;
* the digests are keyed per store (two stores name the same tag differently) and equal
  across stores given the same ``tag_key``;
* tenant A's invalidation of a tag leaves tenant B's entries with that tag, also as seen
  by another process's store on the same L2; a ``public:`` tag is shared; an invalidation
  naming no tenant drops the tag for everyone;
* orphaned tag rows go away with their entries (SQLite), tag sets expire with their
  entries (Redis);
* the in-process generation table is bounded, and forgetting a tag never serves stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from promptcache.invalidation import GenerationCache, LocalBus
from promptcache.tagnames import TagNamer, tag_key_from
from promptcache.tiers import Entry, MemoryStore, SQLiteStore, TieredStore, encode_entry
from promptcache.tiers.redis import RedisStore
from promptcache.tiers.router import InvalidationFailed

from .conftest import FakeClock, RedisServer, key_for

SSN = "078-05-1120"
MAIL = "jane.doe@example.com"
PII_TAGS = [f"person:{SSN}", f"mail:{MAIL}"]

Make = Callable[..., TieredStore]


def _sqlite_dump(path: Path) -> bytes:
    """Every byte SQLite keeps of the cache: the file and its WAL, checkpointed."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [
            repr(r).encode()
            for t in ("pc_entries", "pc_entry_tags", "pc_tag_gens")
            for r in db.execute(f"SELECT * FROM {t}")
        ]
    return b"\n".join(rows) + path.read_bytes()


def _redis_dump(url: str, ns: str) -> bytes:
    """Every key name under ``ns`` and every value, member and field those keys hold."""
    c = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for k in c.scan_iter(match=f"{ns}:*", count=1000):
            out.append(k)
            t = c.type(k)
            if t == b"string":
                out.append(c.get(k) or b"")
            elif t == b"set":
                out.extend(c.smembers(k))
            elif t == b"hash":
                for f, v in c.hgetall(k).items():
                    out += [f, v]
    finally:
        c.close()
    return b"\n".join(out)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Make, Callable[[], bytes]]]:
    """(a factory of stores sharing one real L2, a dump of everything that L2 holds)."""
    made: list[TieredStore] = []
    if request.param == "sqlite":
        path = tmp_path / "c.sqlite3"

        def make(**kw: Any) -> TieredStore:
            kw.setdefault("max_staleness_s", 0.0)
            s = TieredStore(l1=MemoryStore(), l2=SQLiteStore(path), bus=LocalBus(), **kw)
            made.append(s)
            return s

        def dump() -> bytes:
            return _sqlite_dump(path)

    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        ns = request.getfixturevalue("ns")

        def make(**kw: Any) -> TieredStore:
            kw.setdefault("max_staleness_s", 0.0)
            s = TieredStore(l1=MemoryStore(), l2=RedisStore(server.url, namespace=ns), bus=LocalBus(), **kw)
            made.append(s)
            return s

        def dump() -> bytes:
            return _redis_dump(server.url, ns)

    yield make, dump
    for s in made:
        s.close()


def _assert_no_pii(blob: bytes) -> None:
    for value in (SSN, MAIL, SSN.replace("-", "")):
        assert value.encode() not in blob, f"{value} stored in clear"
    # nor a bare SHA-256 of the tag (reversible by trying every SSN)
    for t in PII_TAGS:
        assert hashlib.sha256(t.encode()).hexdigest()[:32].encode() not in blob


# item 2: PII in tag names -------------------------------------------------------------------


def test_tag_values_are_never_stored_in_clear(shared: tuple[Make, Callable[[], bytes]]) -> None:
    make, dump = shared
    store = make()
    k1, k2 = key_for("acme", "1"), key_for("acme", "2")
    store.put(k1, b"v1", tenant="acme", entry_type="tool_output", tags=PII_TAGS, ttl_s=600)
    r = store.get_or_compute(k2, lambda: b"v2", tenant="acme", entry_type="tool_output", tags=PII_TAGS)
    assert r.computed
    assert store.flush()
    blob = dump()
    _assert_no_pii(blob)
    assert b"person:" in blob and b"mail:" in blob  # the readable prefix stays
    store.invalidate(f"person:{SSN}", tenant="acme")
    store.invalidate(f"mail:{MAIL}")
    _assert_no_pii(dump())
    store.l1.clear()
    assert store.get(k1, tenant="acme") is None and store.get(k2, tenant="acme") is None


async def test_tag_values_are_never_stored_in_clear_asyncio(shared: tuple[Make, Callable[[], bytes]]) -> None:
    make, dump = shared
    store = make()
    k1, k2 = key_for("acme", "a1"), key_for("acme", "a2")
    await store.aput(k1, b"v1", tenant="acme", entry_type="tool_output", tags=PII_TAGS, ttl_s=600)

    async def compute() -> bytes:
        return b"v2"

    r = await store.aget_or_compute(k2, compute, tenant="acme", entry_type="tool_output", tags=PII_TAGS)
    assert r.computed
    assert await asyncio.to_thread(store.flush)
    _assert_no_pii(dump())
    await store.ainvalidate(f"person:{SSN}", tenant="acme")
    _assert_no_pii(dump())
    store.l1.clear()
    assert await store.aget(k1, tenant="acme") is None


def test_digests_are_keyed_per_store_or_by_the_configured_key(tmp_path: Path) -> None:
    a = TieredStore(l2=SQLiteStore(tmp_path / "a.sqlite3"))
    b = TieredStore(l2=SQLiteStore(tmp_path / "b.sqlite3"))
    a_again = TieredStore(l2=SQLiteStore(tmp_path / "a.sqlite3"))
    tag = f"person:{SSN}"
    assert a.tag_name(tag).startswith("person:")
    assert a.tag_name(tag) != b.tag_name(tag)  # each store has its own random key
    assert a.tag_name(tag) == a_again.tag_name(tag)  # ... shared by every process on it
    assert a.tag_name(tag, tenant="x") != a.tag_name(tag, tenant="y") != a.tag_name(tag)
    key = "k" * 32
    c = TieredStore(l2=SQLiteStore(tmp_path / "a.sqlite3"), tag_key=key)
    d = TieredStore(l2=SQLiteStore(tmp_path / "b.sqlite3"), tag_key=key)
    assert c.tag_name(tag) == d.tag_name(tag) == TagNamer(tag_key_from(key)).fleet(tag)
    assert TieredStore(l2=SQLiteStore(tmp_path / "b.sqlite3")).tag_name("xyz") == b.tag_name("xyz")
    assert b.tag_name("078-05-1120:x").startswith("tag:")  # a prefix that is not a kind is not shown
    for s in (a, b, a_again, c, d):
        s.close()
    with pytest.raises(ValueError, match="tag_key"):
        TieredStore(tag_key="short")


# item 3: tags belong to a tenant ------------------------------------------------------------


def _seed(store: TieredStore, tag: str) -> tuple[str, str]:
    ka, kb = key_for("A", tag), key_for("B", tag)
    store.put(ka, b"a", tenant="A", entry_type="tool_output", tags=[tag])
    store.put(kb, b"b", tenant="B", entry_type="tool_output", tags=[tag])
    assert store.flush()
    return ka, kb


def test_one_tenants_invalidation_leaves_another_tenants_entries(
    shared: tuple[Make, Callable[[], bytes]],
) -> None:
    make, _ = shared
    writer, other = make(), make()
    ka, kb = _seed(writer, "reservation:42")
    writer.invalidate("reservation:42", tenant="A")
    for s in (writer, other):  # this process and another store on the same L2
        s.l1.clear()
        assert s.get(ka, tenant="A") is None
        assert s.get(kb, tenant="B") is not None
    # a public tag is shared: any tenant's invalidation drops every tenant's entries
    pa, pb = _seed(writer, "public:fare:SFO-JFK")
    writer.invalidate("public:fare:SFO-JFK", tenant="B")
    other.l1.clear()
    assert other.get(pa, tenant="A") is None and other.get(pb, tenant="B") is None
    # no tenant named: the operator's form drops the tag for every tenant
    fa, fb = _seed(writer, "policy:v12")
    writer.invalidate("policy:v12")
    other.l1.clear()
    assert other.get(fa, tenant="A") is None and other.get(fb, tenant="B") is None


async def test_one_tenants_invalidation_leaves_another_tenants_entries_asyncio(
    shared: tuple[Make, Callable[[], bytes]],
) -> None:
    make, _ = shared
    writer, other = make(), make()
    ka, kb = key_for("A", "r"), key_for("B", "r")
    await writer.aput(ka, b"a", tenant="A", entry_type="tool_output", tags=["reservation:7"])
    await writer.aput(kb, b"b", tenant="B", entry_type="tool_output", tags=["reservation:7"])
    assert await asyncio.to_thread(writer.flush)
    await writer.ainvalidate("reservation:7", tenant="A")
    # the invalidating store's own L1 already refuses A's entry and keeps B's
    assert await writer.aget(ka, tenant="A") is None
    assert await writer.aget(kb, tenant="B") is not None
    other.l1.clear()
    assert await other.aget(ka, tenant="A") is None
    assert await other.aget(kb, tenant="B") is not None


def test_a_value_computed_before_a_tenants_invalidation_is_stale(
    shared: tuple[Make, Callable[[], bytes]],
) -> None:
    make, _ = shared
    store = make()
    k = key_for("A", "race")
    gens = store.current_generations(["reservation:9"], tenant="A", refresh=True)
    store.invalidate("reservation:9", tenant="A")
    store.put(k, b"old", tenant="A", entry_type="m", tags=["reservation:9"], tag_generations=gens)
    assert store.flush()
    store.l1.clear()
    assert store.get(k, tenant="A") is None


# cleanup -------------------------------------------------------------------------------------


def _orphans(path: Path) -> tuple[int, int]:
    """(tag rows without their entry, generations of tags no entry uses)."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT COUNT(*) FROM pc_entry_tags t WHERE NOT EXISTS "
            "(SELECT 1 FROM pc_entries e WHERE e.key = t.key)"
        ).fetchone()[0]
        gens = db.execute(
            "SELECT COUNT(*) FROM pc_tag_gens g WHERE NOT EXISTS "
            "(SELECT 1 FROM pc_entry_tags t WHERE t.tag = g.tag)"
        ).fetchone()[0]
    return int(rows), int(gens)


def test_sqlite_orphaned_tag_rows_go_with_their_entries(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "c.sqlite3"
    l2 = SQLiteStore(path, clock=clock, tag_retention_s=3600)
    store = TieredStore(l2=l2, clock=clock)
    for i in range(20):
        store.put(
            key_for("A", f"e{i}"), b"v", tenant="A", entry_type="m", tags=[f"person:{i}", "kb:x"], ttl_s=60
        )
    assert store.flush()
    store.invalidate("person:3", tenant="A")  # deletes one entry: all of its tag rows go with it
    assert _orphans(path)[0] == 0
    clock.advance(120)  # every entry past its TTL
    assert l2.purge_expired() == 19
    assert _orphans(path)[0] == 0
    assert _orphans(path)[1] == 1  # the invalidated tag's generation stays for tag_retention_s ...
    clock.advance(3600)
    l2.purge_expired()
    assert _orphans(path) == (0, 0)  # ... then goes too
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM pc_entry_tags").fetchone()[0] == 0
    store.close()


@pytest.mark.redis
def test_redis_tag_sets_expire_with_their_entries(redis_server: RedisServer, ns: str) -> None:
    l2 = RedisStore(redis_server.url, namespace=ns)
    store = TieredStore(l2=l2, bus=LocalBus())
    short, long_ = key_for("A", "short"), key_for("A", "long")
    store.put(short, b"v", tenant="A", entry_type="m", tags=["kb:x"], ttl_s=30)
    assert store.flush()
    sets = [k for k in l2.client.scan_iter(match=f"{ns}:*:t:*")]
    assert sets and all(0 < l2.client.pttl(k) <= l2.client.pttl(l2.entry_key(short)) + 50 for k in sets)
    store.put(long_, b"v", tenant="A", entry_type="m", tags=["kb:x"], ttl_s=3000)
    assert store.flush()
    for k in l2.client.scan_iter(match=f"{ns}:*:t:*"):  # a set lives as long as its longest member
        members = l2.client.smembers(k)
        assert l2.client.pttl(k) >= max(l2.client.pttl(m) for m in members) - 50
    store.put(short, b"v", tenant="A", entry_type="m", tags=["kb:x"])  # no TTL: its sets persist
    assert store.flush()
    name = l2.entry_key(short).encode()
    assert all(
        l2.client.pttl(k) == -1
        for k in l2.client.scan_iter(match=f"{ns}:*:t:*")
        if name in l2.client.smembers(k)
    )
    store.close()


# bounded generation table --------------------------------------------------------------------


def test_generation_table_is_bounded_and_forgetting_is_safe() -> None:
    gens = GenerationCache(max_tags=100)
    gens.observe({f"t{i}": 5 for i in range(10_000)})
    assert len(gens) == 100
    assert gens.known("t0") == 5  # forgotten: reads as the floor, never lower
    assert gens.heard("t0") == 0
    assert gens.fresh(["t0"], None) is None  # never vouched for: read again from L2
    # through L1: an entry stamped below a forgotten tag's floor is not served
    store = TieredStore(l1=MemoryStore(generations=GenerationCache(max_tags=4)))
    k = key_for("A", "x")
    store.put(k, b"v", tenant="A", entry_type="m", tags=["kb:x"])
    store.invalidate("kb:x", tenant="A")
    store.put(k, b"v2", tenant="A", entry_type="m", tags=["kb:x"])  # stamped with generation 1
    store.invalidate("kb:x", tenant="A")  # generation 2 ...
    for i in range(10):
        store.invalidate(f"other:{i}")  # ... forgotten
    assert store.get(k, tenant="A") is None


def test_an_unreadable_tag_key_keeps_tagged_entries_local(tmp_path: Path) -> None:
    """Until the store's key can be read, tagged values are served from L1 only, and counted."""
    l2 = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.05, connect_timeout=0.05)
    store = TieredStore(l2=l2, bus=LocalBus(), breaker_cooldown_s=60)
    k = key_for("A", "down")
    r = store.get_or_compute(k, lambda: b"v", tenant="A", entry_type="m", tags=["kb:x"])
    assert r.computed and store.get(k, tenant="A") is not None
    assert store.stats().tiers["l2"].tier_skipped >= 1
    with pytest.raises(InvalidationFailed):
        store.invalidate("kb:x", tenant="A")
    store.close()


# upgrading from a version that kept tags in clear ------------------------------------------

_OLD_SQLITE_SCHEMA = """
CREATE TABLE pc_entries (key TEXT PRIMARY KEY, data BLOB NOT NULL, retain_until REAL) WITHOUT ROWID;
CREATE TABLE pc_entry_tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;
CREATE TABLE pc_tag_gens (tag TEXT PRIMARY KEY, gen INTEGER NOT NULL) WITHOUT ROWID;
"""


def test_sqlite_file_of_an_earlier_version_loses_its_clear_tags(tmp_path: Path) -> None:
    """Tagged entries of a version that stored tags in clear are dropped on upgrade, untagged ones kept."""
    path = tmp_path / "old.sqlite3"
    tagged, plain = key_for("A", "old-tagged"), key_for("A", "old-plain")
    old = Entry.new(
        tagged, b"v", tenant="A", entry_type="m", created_at=time.time(), tags={f"person:{SSN}": 0}
    )
    kept = Entry.new(plain, b"v", tenant="A", entry_type="m", created_at=time.time())
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SQLITE_SCHEMA)
        db.execute("INSERT INTO pc_entries VALUES (?, ?, NULL)", (tagged, encode_entry(old)))
        db.execute("INSERT INTO pc_entries VALUES (?, ?, NULL)", (plain, encode_entry(kept)))
        db.execute("INSERT INTO pc_entry_tags VALUES (?, ?)", (f"person:{SSN}", tagged))
        db.execute("INSERT INTO pc_tag_gens VALUES (?, 3)", (f"mail:{MAIL}",))
    store = SQLiteStore(path)
    assert store.get(tagged) is None and store.get(plain) is not None
    _assert_no_pii(_sqlite_dump(path))
    store.close()


@pytest.mark.redis
def test_redis_namespace_of_an_earlier_version_loses_its_clear_tags(
    redis_server: RedisServer, ns: str
) -> None:
    l2 = RedisStore(redis_server.url, namespace=ns)
    tagged = key_for("A", "old-tagged")
    old = Entry.new(
        tagged, b"v", tenant="A", entry_type="m", created_at=time.time(), tags={f"person:{SSN}": 0}
    )
    c = l2.client
    c.set(l2.entry_key(tagged), encode_entry(old))
    bucket = l2.entry_key(tagged).split(":e:")[0]
    c.sadd(f"{bucket}:t:person:{SSN}", l2.entry_key(tagged))
    c.hset(f"{bucket}:g", f"mail:{MAIL}", 3)
    store = TieredStore(l2=l2, bus=LocalBus())
    store.put(key_for("A", "new"), b"v", tenant="A", entry_type="m", tags=["kb:x"])  # the first key read
    assert store.flush()
    assert l2.get(tagged) is None
    _assert_no_pii(_redis_dump(redis_server.url, ns))
    assert store.get(key_for("A", "new"), tenant="A") is not None
    store.close()


@pytest.mark.redis
def test_redis_generations_of_unused_tags_are_cleaned_up(
    redis_server: RedisServer, ns: str, clock: FakeClock
) -> None:
    """A generation not moved for tag_retention_s whose tag has no entry left goes, bucket by bucket."""
    l2 = RedisStore(redis_server.url, namespace=ns, clock=clock, tag_retention_s=3600)
    store = TieredStore(l2=l2, bus=LocalBus(), clock=clock)
    live = key_for("A", "live")
    store.invalidate("kb:gone")
    store.invalidate("kb:live")
    store.put(live, b"v", tenant="A", entry_type="m", tags=["kb:live"], ttl_s=30 * 86400)
    assert store.flush()
    gone, kept = store.tag_name("kb:gone"), store.tag_name("kb:live")
    hashes = [f"{b}:g" for b in l2._bucket_keys]
    assert all(l2.client.hexists(h, gone) for h in hashes)
    store.invalidate("kb:trigger")  # within the retention: nothing goes
    assert all(l2.client.hexists(h, gone) for h in hashes)
    clock.advance(3601)
    store.invalidate("kb:trigger")
    assert not any(l2.client.hexists(h, gone) for h in hashes)  # no entry anywhere: gone everywhere
    home = l2.entry_key(live).split(":e:")[0] + ":g"
    assert l2.client.hexists(home, kept)  # kept where an entry still carries the tag
    store.l1.clear()
    assert store.get(live, tenant="A") is not None
    store.invalidate("kb:live")  # and the tag still reaches that entry
    store.l1.clear()
    assert store.get(live, tenant="A") is None
    store.close()
