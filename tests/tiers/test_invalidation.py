"""Invalidation across processes: Redis pub/sub, and the staleness bound without a bus."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from promptcache.invalidation import GenerationCache, InvalidationEvent, LocalBus, RedisBus, tag
from promptcache.tiers import MemoryStore, SQLiteStore, TieredStore

from . import _procs
from .conftest import FakeClock, RedisFactory, RedisServer, key_for, wait_until


def _run_watcher(kind: str, location: str, parent: TieredStore, max_staleness: float) -> tuple:
    k = key_for("t", "watched")
    parent.put(k, b"v", tenant="t", entry_type="tool_output", tags=["reservation:ABC123"])
    assert parent.flush()
    ctx = mp.get_context("spawn")
    q_out, q_in = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_procs.watcher, args=(kind, location, k, q_out, q_in, max_staleness))
    child.start()
    try:
        ready = q_out.get(timeout=30)
        assert ready[0] == "ready" and ready[1] >= 1  # the child served it from its L1
        parent.invalidate("reservation:ABC123")
        q_in.put("invalidated")
        result = q_out.get(timeout=30)
    finally:
        child.join(15)
        if child.is_alive():
            child.kill()
    return result  # type: ignore[no-any-return]


@pytest.mark.redis
def test_other_process_drops_l1_copy_via_pubsub(redis_server: RedisServer) -> None:
    parent = TieredStore.from_redis(redis_server.url)
    # a staleness bound far longer than the test's wait: only the bus can make it drop in time
    kind, elapsed, l1_stale = _run_watcher("redis", redis_server.url, parent, max_staleness=60.0)
    parent.close()
    assert kind == "gone" and elapsed >= 0, "the other process kept serving a stale entry"
    assert l1_stale >= 1  # its L1 refused the entry because it heard the new generation


def test_other_process_honours_staleness_bound_without_bus(tmp_path: Path) -> None:
    parent = TieredStore.default(tmp_path)
    kind, elapsed, _ = _run_watcher("sqlite", str(tmp_path), parent, max_staleness=0.3)
    parent.close()
    assert kind == "gone" and elapsed >= 0


def test_staleness_bound_is_exact_with_a_fake_clock(tmp_path: Path, clock: FakeClock) -> None:
    """Two routers on one SQLite file, no shared bus: B may serve for at most max_staleness_s."""
    path = tmp_path / "c.sqlite3"

    def router() -> TieredStore:
        return TieredStore(
            l1=MemoryStore(clock=clock),
            l2=SQLiteStore(path, clock=clock),
            bus=LocalBus(),
            max_staleness_s=2.0,
            clock=clock,
        )

    a, b = router(), router()
    k = key_for("t", "x")
    a.put(k, b"v", tenant="t", entry_type="m", tags=["policy:v12"])
    assert a.flush()
    assert b.lookup(k, tenant="t").tier == "l2"  # type: ignore[union-attr]
    clock.advance(1.0)
    a.invalidate("policy:v12")
    assert a.get(k, tenant="t") is None  # the invalidating process: at once
    assert b.lookup(k, tenant="t").tier == "l1"  # type: ignore[union-attr]  # within the bound
    clock.advance(1.01)  # 2.01 s since B validated it
    assert b.get(k, tenant="t") is None
    # once re-validated against L2 a fresh entry is served from L1 again
    a.put(k, b"w", tenant="t", entry_type="m", tags=["policy:v12"])
    assert a.flush()
    assert b.get(k, tenant="t").payload == b"w"  # type: ignore[union-attr]
    assert b.lookup(k, tenant="t").tier == "l1"  # type: ignore[union-attr]
    a.close()
    b.close()


@pytest.mark.redis
def test_bus_health_follows_the_server(redis_factory: RedisFactory, clock: FakeClock) -> None:
    server = redis_factory()
    store = TieredStore.from_redis(server.url, max_staleness_s=0.5, clock=clock)
    bus = store.bus
    assert isinstance(bus, RedisBus) and bus.wait_subscribed(5)
    assert wait_until(bus.healthy, timeout=5)
    k = key_for("t", "h")
    store.put(k, b"v", tenant="t", entry_type="m", tags=["index:docs@42"])
    assert store.flush()
    assert store.lookup(k, tenant="t").tier == "l1"  # type: ignore[union-attr]

    def sleep_server() -> None:
        c = redis.Redis(port=server.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
        c.execute_command("DEBUG", "SLEEP", 1.5)
        c.close()

    t = threading.Thread(target=sleep_server)
    t.start()
    assert wait_until(lambda: not bus.healthy(), timeout=5)
    # the bus cannot vouch for L1 and L2 is asleep: an L1 copy older than the bound is not served
    assert store.lookup(k, tenant="t").tier == "l1"  # type: ignore[union-attr]  # still in bound
    clock.advance(0.6)
    assert store.get(k, tenant="t") is None
    t.join(10)
    assert wait_until(bus.healthy, timeout=5)
    store.close()


@pytest.mark.redis
def test_key_delete_reaches_other_routers(redis_server: RedisServer, ns: str) -> None:
    a = TieredStore.from_redis(redis_server.url, namespace=ns)
    b = TieredStore.from_redis(redis_server.url, namespace=ns)
    for s in (a, b):
        assert s.bus.wait_subscribed(5)  # type: ignore[attr-defined]
    k = key_for("t", "del")
    a.put(k, b"v", tenant="t", entry_type="m")
    assert a.flush()
    assert b.get(k, tenant="t") is not None
    a.delete(k)
    assert wait_until(lambda: len(b.l1) == 0, timeout=5)
    assert b.get(k, tenant="t") is None
    a.close()
    b.close()


def test_generation_cache_and_local_bus() -> None:
    gens = GenerationCache()
    seen: list[tuple[str, int]] = []
    gens.add_listener(lambda t, g: seen.append((t, g)))
    gens.observe({"a": 3})
    gens.observe({"a": 2})  # never goes down from a bus message
    assert gens.known("a") == 3
    gens.observe({"a": 1})  # nor from a read of L2 that raced with an invalidation
    assert gens.known("a") == 3
    gens.adopt_epoch("e1")
    assert gens.adopt_epoch("e2")  # L2 lost its state: a new store epoch forgets every number
    gens.observe({"a": 1})
    assert gens.known("a") == 1
    assert gens.bump_local("a") == 2 and seen == [("a", 2)]  # first sight is no raise
    bus = LocalBus()
    got: list[InvalidationEvent] = []
    bus.subscribe(got.append)
    bus.publish(InvalidationEvent(kind="tag", tag="a", gen=1))
    assert got[0].gen == 1 and not bus.healthy()
    assert tag("tool", "search", "v3") == "tool:search:v3"
    with pytest.raises(ValueError):
        tag("bad\n")
