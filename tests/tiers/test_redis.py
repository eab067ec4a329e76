"""L2 Redis against a real redis-server and a real 3-node cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from promptcache.tiers import Entry, TieredStore, encode_entry
from promptcache.tiers.redis import RedisStore

from .conftest import FakeClock, RedisCluster, RedisServer, key_for

pytestmark = pytest.mark.redis


def _e(key: str, payload: bytes = b"v", *, now: float, ttl: float | None = None, **tags: int) -> Entry:
    return Entry.new(key, payload, tenant="t", entry_type="m", created_at=now, ttl_s=ttl, tags=tags)


@pytest.fixture
def rstore(redis_server: RedisServer, ns: str, clock: FakeClock) -> Iterator[RedisStore]:
    s = RedisStore(redis_server.url, namespace=ns, clock=clock)
    yield s
    s.close()


def test_round_trip_and_pipelined_get_many(rstore: RedisStore, clock: FakeClock) -> None:
    entries = [_e(key_for("t", str(i)), str(i).encode() * 100, now=clock()) for i in range(50)]
    for e in entries:
        rstore.put(e)
    assert rstore.get(entries[0].key) == entries[0]
    keys = [e.key for e in entries] + [key_for("t", "absent")]
    got = rstore.get_many(keys)
    assert got == {e.key: e for e in entries}
    s = rstore.stats()
    assert s.hits == 51 and s.misses == 1
    rstore.delete(entries[0].key)
    assert rstore.get(entries[0].key) is None


def test_ttl_is_checked_and_reclaimed(rstore: RedisStore, clock: FakeClock) -> None:
    k = key_for("t", "ttl")
    rstore.put(_e(k, now=clock(), ttl=30))
    pttl = rstore.client.pttl(rstore.entry_key(k))
    assert 30_000 < pttl <= 35_000  # entry TTL plus the reclaim slack
    clock.advance(30)
    assert rstore.get(k) is None
    rstore.put(_e(k, now=clock() - 100, ttl=30))  # already dead: not written at all
    assert rstore.client.exists(rstore.entry_key(k)) == 1  # the old one is still there
    assert rstore.get(k) is None


def test_invalidation_in_the_same_round_trip(rstore: RedisStore, clock: FakeClock) -> None:
    k1, k2 = key_for("t", "1"), key_for("t", "2")
    rstore.put(_e(k1, now=clock(), **{"index:docs@42": 0, "policy:v12": 0}))
    rstore.put(_e(k2, now=clock(), **{"policy:v12": 0}))
    g = rstore.invalidate_tag("index:docs@42")
    assert g >= 1
    assert rstore.get(k1) is None and rstore.get(k2) is not None
    assert rstore.tag_generations(["index:docs@42", "never"]) == {"index:docs@42": g, "never": 0}
    # every bucket agrees on the new generation
    for b in range(rstore.buckets):
        assert int(rstore.client.hget(f"{rstore.namespace}:{{b{b:02d}}}:g", "index:docs@42")) == g
    g2 = rstore.invalidate_tag("index:docs@42")
    assert g2 > g
    rstore.put(_e(k1, now=clock(), **{"index:docs@42": g2, "policy:v12": 0}))
    assert rstore.get(k1) is not None
    assert rstore.stats().stale == 1


@pytest.mark.parametrize(
    "raw",
    [b"garbage", encode_entry(_e("x" * 64, now=1.0))[:-1], b"PCE\x07" + b"\x00" * 30],
    ids=["garbage", "truncated", "foreign-version"],
)
def test_unreadable_entries_are_counted_misses(rstore: RedisStore, raw: bytes) -> None:
    rstore.put_raw("x" * 64, raw)
    assert rstore.get("x" * 64) is None
    assert rstore.get_many(["x" * 64]) == {}
    assert rstore.stats().corrupt == 2


def test_tag_field_disagreeing_with_entry_is_corrupt(rstore: RedisStore, clock: FakeClock) -> None:
    k = key_for("t", "tags")
    rstore.put_raw(k, encode_entry(_e(k, now=clock(), a=0)), tags=["b"])
    assert rstore.get(k) is None and rstore.stats().corrupt == 1


def test_scripts_reload_after_script_flush(rstore: RedisStore, clock: FakeClock) -> None:
    k = key_for("t", "s")
    rstore.put(_e(k, now=clock()))
    rstore.client.script_flush()
    assert rstore.get(k) is not None
    rstore.client.script_flush()
    assert rstore.get_many([k]) != {}


def test_existing_client_is_accepted(redis_server: RedisServer, ns: str, clock: FakeClock) -> None:
    client = redis.Redis(port=redis_server.port, socket_timeout=1)
    s = RedisStore(client=client, namespace=ns, clock=clock)
    k = key_for("t", "c")
    s.put(_e(k, now=clock()))
    assert s.get(k) is not None
    client.close()


async def test_asyncio_client(redis_server: RedisServer, ns: str, clock: FakeClock) -> None:
    s = RedisStore(redis_server.url, namespace=ns, clock=clock)
    k1, k2 = key_for("t", "a1"), key_for("t", "a2")
    await s.aput(_e(k1, now=clock(), **{"tool:search:v3": 0}))
    await s.aput(_e(k2, now=clock()))
    assert (await s.aget(k1)) is not None
    assert set(await s.aget_many([k1, k2, key_for("t", "no")])) == {k1, k2}
    g = await s.ainvalidate_tag("tool:search:v3")
    assert await s.atag_generations(["tool:search:v3"]) == {"tool:search:v3": g}
    assert (await s.aget(k1)) is None
    await s.adelete(k2)
    assert (await s.aget(k2)) is None
    await s.aclose()


def test_tiered_store_over_redis(redis_server: RedisServer, ns: str, tmp_path: object) -> None:
    store = TieredStore.from_redis(redis_server.url, namespace=ns, blob_dir=str(tmp_path))
    k = key_for("acme", "big")
    store.put(k, b"z" * 400_000, tenant="acme", entry_type="retrieval", tags=["index:docs@42"])
    assert store.flush()
    store.l1.clear()
    hit = store.lookup(k, tenant="acme")
    assert hit is not None and hit.tier == "l3" and hit.entry.payload == b"z" * 400_000
    assert store.lookup(k, tenant="acme").tier == "l1"  # type: ignore[union-attr]
    assert store.get(k, tenant="other") is None
    store.invalidate("index:docs@42")
    assert store.get(k, tenant="acme") is None
    store.close()


# --- cluster -------------------------------------------------------------------------------


def test_cluster_round_trip_spans_nodes(redis_cluster: RedisCluster, ns: str, clock: FakeClock) -> None:
    s = RedisStore(redis_cluster.url, namespace=ns, clock=clock)
    assert s.cluster
    entries = [_e(key_for("t", str(i)), b"p%d" % i, now=clock(), **{"policy:v12": 0}) for i in range(40)]
    for e in entries:
        s.put(e)
    got = s.get_many([e.key for e in entries])
    assert got == {e.key: e for e in entries}
    # the entries really are spread over the three primaries
    holders = set()
    for node in redis_cluster.nodes:
        c = redis.Redis(port=node.port)
        if c.keys(f"{ns}:*:e:*"):
            holders.add(node.port)
        c.close()
    assert len(holders) == 3
    g = s.invalidate_tag("policy:v12")
    assert s.get_many([e.key for e in entries]) == {}
    assert s.tag_generations(["policy:v12"]) == {"policy:v12": g}
    s.close()


def test_cluster_option_on_plain_url(redis_cluster: RedisCluster, ns: str, clock: FakeClock) -> None:
    url = f"redis://127.0.0.1:{redis_cluster.nodes[0].port}"
    s = RedisStore(url, cluster=True, namespace=ns, clock=clock)
    k = key_for("t", "plain")
    s.put(_e(k, now=clock()))
    assert s.get(k) is not None
    s.client.script_flush()  # scripts gone from every primary: reloaded on demand
    assert s.get_many([k, key_for("t", "x")]) != {}
    s.close()


async def test_cluster_asyncio(redis_cluster: RedisCluster, ns: str, clock: FakeClock) -> None:
    s = RedisStore(redis_cluster.url, namespace=ns, clock=clock)
    keys = [key_for("t", f"a{i}") for i in range(20)]
    for k in keys:
        await s.aput(_e(k, now=clock(), **{"tool:x": 0}))
    assert set(await s.aget_many(keys)) == set(keys)
    await s.ainvalidate_tag("tool:x")
    assert await s.aget_many(keys) == {}
    await s.aclose()


def test_sentinel_url(redis_sentinel: str, ns: str, clock: FakeClock) -> None:
    s = RedisStore(redis_sentinel, namespace=ns, clock=clock)
    k = key_for("t", "sentinel")
    s.put(_e(k, now=clock(), **{"policy:v12": 0}))
    assert s.get(k) is not None
    s.invalidate_tag("policy:v12")
    assert s.get(k) is None
    s.close()


async def test_sentinel_url_asyncio(redis_sentinel: str, ns: str, clock: FakeClock) -> None:
    s = RedisStore(redis_sentinel, namespace=ns, clock=clock)
    k = key_for("t", "asentinel")
    await s.aput(_e(k, now=clock()))
    assert (await s.aget(k)) is not None
    await s.aclose()
