"""L1: LRU bounds, TTL, tag generations, thread safety."""

from __future__ import annotations

import threading

from promptcache.invalidation import GenerationCache
from promptcache.tiers import Entry, MemoryStore

from .conftest import FakeClock


def _e(key: str, size: int = 10, ttl: float | None = None, now: float = 0.0, **tags: int) -> Entry:
    return Entry.new(key, b"x" * size, tenant="t", entry_type="m", created_at=now, ttl_s=ttl, tags=tags)


def test_lru_by_count(clock: FakeClock) -> None:
    m = MemoryStore(max_entries=3, clock=clock)
    for k in "abc":
        m.put(_e(k))
    assert m.get("a") is not None  # a becomes most recent
    m.put(_e("d"))
    assert m.get("b") is None and m.get("a") is not None and len(m) == 3
    assert m.stats().evictions == 1


def test_lru_by_bytes(clock: FakeClock) -> None:
    one = _e("a", 1000).footprint()
    m = MemoryStore(max_bytes=one * 2, clock=clock)
    m.put(_e("a", 1000))
    m.put(_e("b", 1000))
    m.put(_e("c", 1000))
    assert m.get("a") is None and m.get("c") is not None
    assert m.stats().bytes <= one * 2
    m.put(_e("huge", one * 3))  # never fits: not stored, nothing evicted for it
    assert m.get("huge") is None and m.get("c") is not None


def test_ttl_uses_the_clock(clock: FakeClock) -> None:
    m = MemoryStore(clock=clock)
    m.put(_e("a", ttl=10, now=clock()))
    clock.advance(9.99)
    assert m.get("a") is not None
    clock.advance(0.02)
    assert m.get("a") is None and len(m) == 0


def test_tag_generation_makes_entry_stale(clock: FakeClock) -> None:
    gens = GenerationCache(clock)
    m = MemoryStore(clock=clock, generations=gens)
    m.put(_e("a", **{"policy:v12": 0}))
    m.put(_e("b"))
    assert m.invalidate_tag("policy:v12") == 1
    assert m.get("a") is None and m.get("b") is not None
    assert m.stats().stale == 1
    m.put(_e("a", **{"policy:v12": 1}))
    assert m.get("a") is not None


def test_concurrent_use_keeps_bounds() -> None:
    m = MemoryStore(max_entries=50, max_bytes=20_000)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(2000):
                k = f"{(i * 7 + j) % 120}"
                if j % 3:
                    m.put(_e(k, 50))
                else:
                    got = m.get(k)
                    assert got is None or got.key == k
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = m.stats()
    assert len(m) <= 50 and s.bytes <= 20_000
    assert s.bytes == sum(e.footprint() for e in m.get_many([str(i) for i in range(120)]).values())
