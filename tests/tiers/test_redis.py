"""L2 Redis against a real redis-server and a real 3-node cluster."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator

import pytest
import redis

from promptcache.invalidation import InvalidationEvent
from promptcache.tiers import Entry, TieredStore, encode_entry
from promptcache.tiers.redis import RedisStore

from . import _redis_procs
from .conftest import FakeClock, RedisCluster, RedisFactory, RedisServer, key_for, wait_until

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


def test_invalidation_deletes_tagged_entries_in_every_bucket(rstore: RedisStore, clock: FakeClock) -> None:
    tagged = [key_for("t", f"d{i}") for i in range(40)]  # spread over the 16 buckets
    for k in tagged:
        rstore.put(_e(k, now=clock(), **{"index:docs@42": 0, "policy:v12": 0}))
    k2 = key_for("t", "2")
    rstore.put(_e(k2, now=clock(), **{"policy:v12": 0}))
    g = rstore.invalidate_tag("index:docs@42")
    assert g >= 1
    assert rstore.get_many(tagged) == {} and rstore.get(k2) is not None
    assert not any(rstore.client.exists(rstore.entry_key(k)) for k in tagged)  # gone, not just refused
    assert not any(rstore.client.exists(rstore.tag_set_key(b, "index:docs@42")) for b in range(16))
    assert rstore.tag_generations(["index:docs@42", "never"]) == {"index:docs@42": g, "never": 0}
    # every bucket agrees on the new generation
    for b in range(rstore.buckets):
        assert int(rstore.client.hget(f"{rstore.namespace}:{{b{b:02d}}}:g", "index:docs@42")) == g
    g2 = rstore.invalidate_tag("index:docs@42")
    assert g2 > g
    rstore.put(_e(tagged[0], now=clock(), **{"index:docs@42": g2, "policy:v12": 0}))
    assert rstore.get(tagged[0]) is not None


def test_a_value_computed_before_an_invalidation_never_lands_after_it(
    rstore: RedisStore, clock: FakeClock
) -> None:
    k = key_for("t", "race")
    rstore.put(_e(k, b"old", now=clock()))  # untagged, still there
    before = rstore.tag_generations(["reservation:ABC123"])  # the writer reads generations ...
    rstore.invalidate_tag("reservation:ABC123")  # ... another client invalidates ...
    rstore.put(_e(k, b"new", now=clock(), **before))  # ... and the write arrives late
    assert rstore.get(k) is None  # refused, and the value it was to replace is gone too
    assert rstore.client.exists(rstore.entry_key(k)) == 0
    assert rstore.stats().stale == 1


async def test_asyncio_put_is_refused_the_same_way(rstore: RedisStore, clock: FakeClock) -> None:
    k = key_for("t", "arace")
    before = await rstore.atag_generations(["tool:x"])
    await rstore.ainvalidate_tag("tool:x")
    await rstore.aput(_e(k, now=clock(), **before))
    assert await rstore.aget(k) is None and rstore.stats().stale == 1
    await rstore.aclose()


def test_invalidation_drains_a_set_larger_than_one_batch(
    redis_server: RedisServer, ns: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("promptcache.tiers.redis._DRAIN_BATCH", 3)  # so 25 members take 9 calls
    s = RedisStore(redis_server.url, namespace=ns, buckets=1, clock=clock)
    keys = [key_for("t", f"m{i}") for i in range(25)]
    for k in keys:
        s.put(_e(k, now=clock(), **{"policy:v12": 0}))
    assert s.client.scard(s.tag_set_key(0, "policy:v12")) == 25
    s.invalidate_tag("policy:v12")
    assert s.get_many(keys) == {} and s.client.exists(s.tag_set_key(0, "policy:v12")) == 0
    s.close()


def test_tag_sets_shed_members_whose_entry_is_gone(
    redis_server: RedisServer, ns: str, clock: FakeClock
) -> None:
    s = RedisStore(redis_server.url, namespace=ns, buckets=1, clock=clock)
    gone = [key_for("t", f"g{i}") for i in range(20)]
    for k in gone:
        s.put(_e(k, now=clock(), **{"policy:v12": 0}))
        s.delete(k)
    live = key_for("t", "live")
    # each tagged put samples two members and drops those whose entry no longer exists
    for _ in range(300):
        s.put(_e(live, now=clock(), **{"policy:v12": 0}))
    assert s.client.smembers(s.tag_set_key(0, "policy:v12")) == {s.entry_key(live).encode()}
    s.close()


def test_a_hit_is_one_plain_get(redis_factory: RedisFactory, clock: FakeClock) -> None:
    server = redis_factory()  # its own server: the command counters are server-wide
    s = RedisStore(server.url, clock=clock)
    k = key_for("t", "plain")
    s.put(_e(k, now=clock(), **{"policy:v12": 0}))
    s.client.config_resetstat()
    assert s.get(k) is not None
    calls = {c: v["calls"] for c, v in s.client.info("commandstats").items()}
    calls.pop("cmdstat_config|resetstat")
    assert calls == {"cmdstat_get": 1}, calls
    s.close()


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


def test_entry_stored_under_another_key_is_corrupt(rstore: RedisStore, clock: FakeClock) -> None:
    k = key_for("t", "here")
    rstore.put_raw(k, encode_entry(_e(key_for("t", "elsewhere"), now=clock())))
    assert rstore.get(k) is None and rstore.stats().corrupt == 1


async def test_previous_layout_entry_is_a_counted_miss_then_overwritten(
    rstore: RedisStore, clock: FakeClock
) -> None:
    k = key_for("t", "v1")
    e = _e(k, now=clock(), **{"policy:v12": 0})
    # what the previous layout wrote: a hash {d: entry, t: tag names}
    rstore.client.hset(rstore.entry_key(k), mapping={"d": encode_entry(e), "t": "policy:v12"})
    assert rstore.get(k) is None
    assert await rstore.aget(k) is None
    assert rstore.get_many([k]) == {}  # MGET sees no string there: a plain miss
    st = rstore.stats()
    assert st.corrupt == 2 and st.misses == 3 and st.errors == 0
    rstore.put(e)  # the next write replaces it
    assert rstore.get(k) == e
    await rstore.aclose()


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
    for node in redis_cluster.nodes:  # deleted on every primary, tag sets included
        c = redis.Redis(port=node.port)
        assert c.keys(f"{ns}:*:e:*") == [] and c.keys(f"{ns}:*:t:*") == []
        c.close()
    s.put(entries[0])  # computed under the old generation: refused on its node
    assert s.get(entries[0].key) is None and s.stats().stale == 1
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


def test_no_stale_read_after_invalidate_racing_another_process(redis_server: RedisServer, ns: str) -> None:
    """A real race: another process writes values computed under the generation it last read.

    This process invalidates meanwhile; once ``invalidate_tag`` returns, every readable
    entry must carry the generation it returned (this process is the only invalidator).
    """
    ctx = mp.get_context("spawn")
    keys = [key_for("t", f"race{i}") for i in range(8)]
    tag = "reservation:ABC123"
    stop, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_redis_procs.racing_writer, args=(redis_server.url, ns, tag, keys, stop, out))
    store = RedisStore(redis_server.url, namespace=ns, socket_timeout=5.0)
    child.start()
    try:
        assert wait_until(lambda: store.get_many(keys), timeout=30), "the writer never wrote"
        served = 0
        for _ in range(60):
            g = store.invalidate_tag(tag)
            for got in (store.get_many(keys), {k: store.get(k) for k in keys}):
                for e in got.values():
                    if e is not None:
                        assert e.tags == {tag: g} and e.payload == b"%d" % g, (e.tags, g)
                        served += 1
            time.sleep(0.003)  # let the writer land some writes under the new generation
        stop.set()
        attempted, refused = out.get(timeout=30)
    finally:
        stop.set()
        child.join(15)
        if child.is_alive():
            child.kill()
        store.close()
    # the race was really run: writes landed between invalidations, and some arrived too late
    assert served > 0 and attempted > 60 and refused > 0, (served, attempted, refused)


def test_invalidation_spares_an_entry_rewritten_without_the_tag(rstore: RedisStore, clock: FakeClock) -> None:
    k, other = key_for("t", "rewritten"), key_for("t", "other-tags")
    rstore.put(_e(k, b"tagged", now=clock(), **{"policy:v12": 0}))
    rstore.put(_e(k, b"untagged", now=clock()))  # still a member of policy:v12's set
    rstore.put(_e(other, b"a", now=clock(), **{"policy:v12": 0}))
    # tags that look alike in the header: a prefix, a suffix, and one holding quotes
    rstore.put(_e(other, b"b", now=clock(), **{"policy:v1": 0, 'x"policy:v12': 0, "policy:v12x": 0}))
    rstore.invalidate_tag("policy:v12")
    assert rstore.get(k).payload == b"untagged"  # type: ignore[union-attr]
    assert rstore.get(other).payload == b"b"  # type: ignore[union-attr]
    rstore.put(_e(other, b"c", now=clock(), **{"a": 0, 'we"ird\\': 0}))
    rstore.invalidate_tag('we"ird\\')
    assert rstore.get(other) is None


def test_invalidation_deletes_a_member_rewritten_in_the_previous_layout(
    rstore: RedisStore, clock: FakeClock
) -> None:
    k = key_for("t", "mixed")
    rstore.put(_e(k, now=clock(), **{"policy:v12": 0}))
    ekey = rstore.entry_key(k)
    rstore.client.delete(ekey)  # an older process rewrites it as a hash
    rstore.client.hset(ekey, mapping={"d": b"x", "t": "policy:v12"})
    rstore.invalidate_tag("policy:v12")  # no WRONGTYPE error from the script: deleted
    assert rstore.client.exists(ekey) == 0


def test_router_refuses_an_l2_entry_behind_a_known_generation(redis_server: RedisServer, ns: str) -> None:
    """An older process's invalidation: generations raised and published, entries left in place.

    A router that heard of it on the bus does not serve the entry from L2.
    """
    old, new = (TieredStore.from_redis(redis_server.url, namespace=ns) for _ in range(2))
    for s in (old, new):
        assert s.bus.wait_subscribed(5)  # type: ignore[attr-defined]
    k = key_for("t", "behind")
    new.put(k, b"v", tenant="t", entry_type="m", tags=["policy:v12"])
    assert new.flush()
    new.l1.clear()
    l2 = new.l2
    assert isinstance(l2, RedisStore)
    g = int(l2.client.incr(f"{ns}:clock"))
    name = new.tag_name("policy:v12")  # the stored (fleet-wide) name of the tag
    for b in range(l2.buckets):
        l2.client.hset(f"{ns}:{{b{b:02d}}}:g", name, g)
    old.bus.publish(InvalidationEvent(kind="tag", tag=name, gen=g))
    assert wait_until(lambda: new.generations.known(name) == g)
    assert l2.get(k) is not None  # still in Redis ...
    assert new.get(k, tenant="t") is None  # ... but not served
    assert new.stats().tiers["l2"].stale == 1
    old.close()
    new.close()
