"""TieredStore: promotion, tenancy, single-flight, SWR, encryption, write-back."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptcache.tiers import (
    FileBlobStore,
    KeyRing,
    MemoryStore,
    SQLiteStore,
    TieredStore,
    encode_entry,
)

from .conftest import FakeClock, key_for, wait_until


@pytest.fixture
def tiered(tmp_path: Path, clock: FakeClock) -> Iterator[TieredStore]:
    s = TieredStore(
        l1=MemoryStore(clock=clock),
        l2=SQLiteStore(tmp_path / "c.sqlite3", clock=clock),
        l3=FileBlobStore(tmp_path / "blobs"),
        blob_threshold=1000,
        clock=clock,
    )
    yield s
    s.close()


def test_reads_fall_through_and_promote(tiered: TieredStore) -> None:
    small, big = key_for("t", "s"), key_for("t", "b")
    tiered.put(small, b"s", tenant="t", entry_type="tool_output")
    tiered.put(big, b"B" * 5000, tenant="t", entry_type="retrieval")
    assert tiered.flush()
    assert tiered.lookup(small, tenant="t").tier == "l1"  # type: ignore[union-attr]
    tiered.l1.clear()
    assert tiered.lookup(small, tenant="t").tier == "l2"  # type: ignore[union-attr]
    assert tiered.lookup(small, tenant="t").tier == "l1"  # type: ignore[union-attr]
    hit = tiered.lookup(big, tenant="t")
    assert hit is not None and hit.tier == "l3" and hit.entry.payload == b"B" * 5000
    # L2 keeps only the pointer
    raw = (
        sqlite3.connect(tiered.l2.path)
        .execute(  # type: ignore[union-attr]
            "SELECT length(data) FROM pc_entries WHERE key = ?", (big,)
        )
        .fetchone()[0]
    )
    assert raw < 1000


def test_never_crosses_tenants(tiered: TieredStore) -> None:
    k = key_for("a", "x")
    tiered.put(k, b"secret", tenant="a", entry_type="response")
    assert tiered.flush()
    assert tiered.get(k, tenant="b") is None
    tiered.l1.clear()
    assert tiered.get(k, tenant="b") is None
    assert tiered.get_many([k], tenant="b") == {}
    assert tiered.get(k, tenant="a") is not None
    assert tiered.stats().tenant_mismatch >= 3


def test_get_many(tiered: TieredStore) -> None:
    keys = [key_for("t", str(i)) for i in range(10)]
    for i, k in enumerate(keys):
        tiered.put(k, b"%d" % i, tenant="t", entry_type="m")
    assert tiered.flush()
    tiered.l1.clear()
    for k in keys[:3]:
        tiered.get(k, tenant="t")
    got = tiered.get_many([*keys, key_for("t", "none")], tenant="t")
    assert [got[k].payload for k in keys] == [b"%d" % i for i in range(10)]


def test_ttl_honoured_in_every_tier(tiered: TieredStore, clock: FakeClock) -> None:
    k = key_for("t", "ttl")
    tiered.put(k, b"v", tenant="t", entry_type="m", ttl_s=10)
    assert tiered.flush()
    clock.advance(10)
    assert tiered.get(k, tenant="t") is None
    tiered.l1.clear()
    assert tiered.get(k, tenant="t") is None


def test_invalidate_then_nothing_stale(tiered: TieredStore) -> None:
    k = key_for("t", "r")
    tiered.put(k, b"v", tenant="t", entry_type="tool_output", tags=["reservation:ABC123"])
    assert tiered.flush()
    gen = tiered.invalidate("reservation:ABC123")
    assert gen == 1
    assert tiered.get(k, tenant="t") is None  # L1 refuses
    tiered.l1.clear()
    assert tiered.get(k, tenant="t") is None  # L2 refuses (and deleted it)


def test_write_racing_an_invalidation_is_stale(tiered: TieredStore) -> None:
    """A value computed before an invalidation never becomes servable after it."""
    k = key_for("t", "race")
    gens = tiered.current_generations(["tool:search:v3"], tenant="t", refresh=True)
    tiered.invalidate("tool:search:v3")  # happens while the value is being computed
    tiered.put(k, b"old", tenant="t", entry_type="m", tags=["tool:search:v3"], tag_generations=gens)
    assert tiered.flush()
    assert tiered.get(k, tenant="t") is None
    tiered.l1.clear()
    assert tiered.get(k, tenant="t") is None


def test_delete_beats_a_queued_write(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    store = TieredStore(l2=l2)
    blocker = sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: the write-back waits
    k = key_for("t", "d")
    store.put(k, b"v", tenant="t", entry_type="m")
    store.put(k, b"v2", tenant="t", entry_type="m")
    assert store.below is not None
    store.below.cut(k)  # what delete() does first: queued puts of k are discarded
    store.l1.delete(k)
    blocker.execute("COMMIT")
    assert store.flush()
    assert l2.get(k) is None
    store.close()


def test_single_flight_threads(tiered: TieredStore) -> None:
    k = key_for("t", "sf")
    calls = 0
    release = threading.Event()

    def compute() -> bytes:
        nonlocal calls
        calls += 1
        release.wait(10)
        return b"computed"

    results: list[bytes] = []

    def worker() -> None:
        r = tiered.get_or_compute(k, compute, tenant="t", entry_type="tool_output")
        results.append(r.payload)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    # every thread is either the leader or parked on its flight before we let it finish
    assert wait_until(lambda: tiered.stats().single_flight_waiters == 63, timeout=10)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == 1 and results == [b"computed"] * 64
    assert tiered.get_or_compute(k, compute, tenant="t", entry_type="x").tier == "l1"


def test_single_flight_shares_the_error(tiered: TieredStore) -> None:
    k = key_for("t", "err")

    def boom() -> bytes:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        tiered.get_or_compute(k, boom, tenant="t", entry_type="m")
    assert tiered.get(k, tenant="t") is None
    assert tiered.get_or_compute(k, lambda: b"ok", tenant="t", entry_type="m").computed


async def test_single_flight_asyncio(tiered: TieredStore) -> None:
    k = key_for("t", "asf")
    calls = 0
    gate = asyncio.Event()

    async def compute() -> bytes:
        nonlocal calls
        calls += 1
        await gate.wait()
        return b"async"

    tasks = [
        asyncio.create_task(tiered.aget_or_compute(k, compute, tenant="t", entry_type="m")) for _ in range(64)
    ]
    for _ in range(200):
        if tiered.stats().single_flight_waiters == 63:
            break
        await asyncio.sleep(0.005)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert [r.payload for r in results] == [b"async"] * 64
    assert sum(r.computed for r in results) == 1


async def test_async_api(tiered: TieredStore) -> None:
    k = key_for("t", "aa")
    await tiered.aput(k, b"v", tenant="t", entry_type="m", tags=["policy:v12"])
    assert await asyncio.to_thread(tiered.flush)
    tiered.l1.clear()
    assert (await tiered.aget(k, tenant="t")) is not None
    assert set(await tiered.aget_many([k], tenant="t")) == {k}
    await tiered.ainvalidate("policy:v12")
    assert (await tiered.aget(k, tenant="t")) is None
    await tiered.aput(k, b"w", tenant="t", entry_type="m")
    await tiered.adelete(k)
    assert (await tiered.aget(k, tenant="t")) is None


def test_swr_only_for_allowed_types(tmp_path: Path, clock: FakeClock) -> None:
    store = TieredStore(
        l2=SQLiteStore(tmp_path / "c.sqlite3", clock=clock),
        swr_types=["retrieval"],
        swr_window_s=30,
        clock=clock,
    )
    kr, kt = key_for("t", "r"), key_for("t", "t")
    n = {"r": 0, "t": 0}

    def make(name: str) -> object:
        def f() -> bytes:
            n[name] += 1
            return b"%s%d" % (name.encode(), n[name])

        return f

    fr, ft = make("r"), make("t")
    store.get_or_compute(kr, fr, tenant="t", entry_type="retrieval", ttl_s=10)  # type: ignore[arg-type]
    store.get_or_compute(kt, ft, tenant="t", entry_type="tool_output", ttl_s=10)  # type: ignore[arg-type]
    clock.advance(15)
    r = store.get_or_compute(kr, fr, tenant="t", entry_type="retrieval", ttl_s=10)  # type: ignore[arg-type]
    assert r.stale and r.payload == b"r1"
    assert store.get(kr, tenant="t") is None or n["r"] == 2  # plain get never serves stale
    assert wait_until(lambda: n["r"] == 2 and store.flush(0.1), timeout=5)
    r2 = store.get_or_compute(kr, fr, tenant="t", entry_type="retrieval", ttl_s=10)  # type: ignore[arg-type]
    assert r2.payload == b"r2" and not r2.stale
    t = store.get_or_compute(kt, ft, tenant="t", entry_type="tool_output", ttl_s=10)  # type: ignore[arg-type]
    assert t.computed and t.payload == b"t2"
    clock.advance(100)  # past the stale window too
    r3 = store.get_or_compute(kr, fr, tenant="t", entry_type="retrieval", ttl_s=10)  # type: ignore[arg-type]
    assert r3.computed
    assert store.stats().swr_served == 1
    store.close()


def test_swr_never_serves_invalidated(tmp_path: Path, clock: FakeClock) -> None:
    store = TieredStore(swr_types=["retrieval"], clock=clock)
    k = key_for("t", "x")
    store.get_or_compute(k, lambda: b"a", tenant="t", entry_type="retrieval", tags=["i"], ttl_s=1)
    clock.advance(2)
    store.invalidate("i")
    r = store.get_or_compute(k, lambda: b"b", tenant="t", entry_type="retrieval", tags=["i"])
    assert r.computed and r.payload == b"b"
    store.close()


# --- encryption at rest ------------------------------------------------------------------


def test_encryption_at_rest_and_rotation(tmp_path: Path) -> None:
    k1, k2 = KeyRing.generate_key(), KeyRing.generate_key()
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    blobs = FileBlobStore(tmp_path / "blobs")
    store = TieredStore(l2=l2, l3=blobs, keyring=KeyRing({"k1": k1}, "k1"), blob_threshold=100)
    small, big = key_for("t", "small"), key_for("t", "big")
    store.put(small, b"top secret", tenant="t", entry_type="response")
    store.put(big, b"secret!" * 100, tenant="t", entry_type="response")
    assert store.flush()
    stored = l2.get(small)
    assert stored is not None and stored.key_id == "k1" and b"top secret" not in stored.payload  # type: ignore[operator]
    for p in (tmp_path / "blobs").rglob("*"):
        if p.is_file():
            assert b"secret!" not in p.read_bytes()
    store.close()

    # rotate: k2 active, k1 still readable
    rotated = TieredStore(
        l2=SQLiteStore(tmp_path / "c.sqlite3"),
        l3=FileBlobStore(tmp_path / "blobs"),
        keyring=KeyRing({"k1": k1, "k2": k2}, "k2"),
        blob_threshold=100,
    )
    assert rotated.get(small, tenant="t").payload == b"top secret"  # type: ignore[union-attr]
    assert rotated.get(big, tenant="t").payload == b"secret!" * 100  # type: ignore[union-attr]
    rotated.put(small, b"new", tenant="t", entry_type="response")
    assert rotated.flush()
    assert rotated.l2.get(small).key_id == "k2"  # type: ignore[union-attr]
    rotated.close()

    # k1 retired: its entries are misses, not errors
    retired = TieredStore(
        l2=SQLiteStore(tmp_path / "c.sqlite3"),
        l3=FileBlobStore(tmp_path / "blobs"),
        keyring=KeyRing({"k2": k2}, "k2"),
    )
    assert retired.get(big, tenant="t") is None
    assert retired.get(small, tenant="t").payload == b"new"  # type: ignore[union-attr]
    assert retired.stats().tiers["l2"].corrupt == 1
    retired.close()


def test_tampered_or_moved_ciphertext_is_a_miss(tmp_path: Path) -> None:
    ring = KeyRing({"k": KeyRing.generate_key()}, "k")
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    store = TieredStore(l2=l2, keyring=ring)
    a, b = key_for("t", "a"), key_for("t", "b")
    store.put(a, b"alpha", tenant="t", entry_type="m")
    store.put(b, b"beta", tenant="t", entry_type="m")
    assert store.flush()
    ea, eb = l2.get(a), l2.get(b)
    assert ea is not None and eb is not None and ea.payload is not None
    flipped = bytes([ea.payload[-1] ^ 1])
    l2.put(ea.model_copy(update={"payload": ea.payload[:-1] + flipped}))
    # b's ciphertext under b's metadata but a's key: authentication binds it to a
    l2.put_raw(b, encode_entry(eb.model_copy(update={"payload": ea.payload})))
    store.l1.clear()
    assert store.get(a, tenant="t") is None and store.get(b, tenant="t") is None
    assert store.stats().tiers["l2"].corrupt == 2
    store.close()


# --- write-back ---------------------------------------------------------------------------


def test_write_back_queue_full_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    l2 = SQLiteStore(path, busy_timeout_s=10)
    store = TieredStore(l2=l2, writeback_queue_size=1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the worker's first write waits on this lock
    keys = [key_for("t", str(i)) for i in range(5)]
    store.put(keys[0], b"0", tenant="t", entry_type="m")
    assert store.below is not None
    queued = store.below.queue
    assert wait_until(lambda: queued.qsize() == 0)  # the worker holds #0
    for k in keys[1:]:
        store.put(k, b"x", tenant="t", entry_type="m")  # #1 queued, #2..#4 dropped
    s = store.stats()
    assert s.writeback_dropped == 3 and s.tiers["l2"].dropped == 3
    # the hot path never blocked: every value is in L1
    assert all(store.get(k, tenant="t") is not None for k in keys)
    blocker.execute("COMMIT")
    assert store.flush()
    assert set(l2.get_many(keys)) == {keys[0], keys[1]}
    store.close()
