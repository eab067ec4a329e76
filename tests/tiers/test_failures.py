"""A Redis that dies or stops answering costs a bounded wait and a counted skip, never an error."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from promptcache.tiers import TieredStore
from promptcache.tiers.redis import RedisStore

from .conftest import RedisFactory, key_for, wait_until

pytestmark = pytest.mark.redis


def _pause(port: int, seconds: float) -> threading.Thread:
    """DEBUG SLEEP on a separate connection: the server answers nobody meanwhile."""

    def run() -> None:
        c = redis.Redis(port=port, socket_timeout=seconds + 5)
        c.execute_command("DEBUG", "SLEEP", seconds)
        c.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_killed_redis_is_skipped(redis_factory: RedisFactory, ns: str) -> None:
    server = redis_factory()
    store = TieredStore.from_redis(server.url, namespace=ns, breaker_cooldown_s=60)
    k1, k2 = key_for("t", "1"), key_for("t", "2")
    store.put(k1, b"v", tenant="t", entry_type="m")
    assert store.flush()
    server.kill()
    store.l1.clear()
    assert store.get(k1, tenant="t") is None  # a miss, not an exception
    assert store.get_many([k1, k2], tenant="t") == {}
    r = store.get_or_compute(k2, lambda: b"fresh", tenant="t", entry_type="m", tags=["a"])
    assert r.computed and r.payload == b"fresh"
    store.put(k1, b"again", tenant="t", entry_type="m")
    assert store.flush()
    s = store.stats()
    assert s.tiers["l2"].tier_skipped >= 3
    assert s.writeback_failed >= 1
    assert store.get(k2, tenant="t") is not None  # L1 still serves what this process computed
    store.close()


def test_paused_redis_times_out_and_is_skipped(redis_factory: RedisFactory, ns: str) -> None:
    server = redis_factory()
    l2 = RedisStore(server.url, namespace=ns, socket_timeout=0.2)
    store = TieredStore(l2=l2, breaker_cooldown_s=0.0)
    k = key_for("t", "p")
    store.put(k, b"v", tenant="t", entry_type="m")
    assert store.flush()
    store.l1.clear()
    sleeper = _pause(server.port, 1.5)
    # wait until the server really is asleep (it stops answering a PING)
    probe = redis.Redis(port=server.port, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))

    def asleep() -> bool:
        try:
            probe.ping()
            return False
        except redis.TimeoutError:
            return True

    assert wait_until(asleep, timeout=5)
    assert store.get(k, tenant="t") is None
    assert store.stats().tiers["l2"].tier_skipped >= 1
    sleeper.join(10)
    # once the server answers again the tier is used again
    assert wait_until(lambda: store.get(k, tenant="t") is not None, timeout=5)
    probe.close()
    store.close()


async def test_paused_redis_asyncio(redis_factory: RedisFactory, ns: str) -> None:
    server = redis_factory()
    l2 = RedisStore(server.url, namespace=ns, socket_timeout=0.2)
    store = TieredStore(l2=l2, breaker_cooldown_s=0.0, tier_timeout_s=0.3)
    k = key_for("t", "ap")
    await store.aput(k, b"v", tenant="t", entry_type="m")
    assert store.flush()
    store.l1.clear()
    probe = redis.Redis(port=server.port, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))
    sleeper = _pause(server.port, 1.0)

    def asleep() -> bool:
        try:
            probe.ping()
            return False
        except redis.TimeoutError:
            return True

    assert wait_until(asleep, timeout=5)
    assert (await store.aget(k, tenant="t")) is None
    assert store.stats().tiers["l2"].tier_skipped >= 1
    sleeper.join(10)
    probe.close()
    await store.aclose()


def test_circuit_stays_open_without_waiting(redis_factory: RedisFactory, ns: str) -> None:
    server = redis_factory()
    store = TieredStore.from_redis(server.url, namespace=ns, breaker_cooldown_s=60)
    server.kill()
    k = key_for("t", "c")
    for _ in range(5):
        assert store.get(k, tenant="t") is None
    # the first call found the server dead; the next four did not touch the network
    assert store.stats().tiers["l2"].tier_skipped == 5
    assert store.l2.stats().errors == 1  # type: ignore[union-attr]
    store.close()


def test_invalidate_reports_failure(redis_factory: RedisFactory, ns: str) -> None:
    from promptcache.tiers import InvalidationFailed

    server = redis_factory()
    store = TieredStore.from_redis(server.url, namespace=ns)
    server.kill()
    with pytest.raises(InvalidationFailed):
        store.invalidate("policy:v12")
    store.close()
