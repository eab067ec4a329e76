"""No stale value after ``invalidate()`` returns: single-flight joins respect tag generations.

Issue 19, item 4 (in-flight joins). A leader starts computing a tagged value, ``invalidate()``
of its tag returns, and only then another caller asks for the same key: that caller must not
join the leader's flight (whose value was computed under the old generation). It starts a
flight of its own and gets a value computed after the invalidation. Sync (threads) and
asyncio, over the embedded SQLite L2 and over a real Redis L2; and across processes, where no
flight is shared, no reader may see the old value once ``invalidate()`` has returned.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from promptcache.tiers import TieredStore

from . import _inflight_procs
from .conftest import RedisServer, key_for, wait_until

TAG = "reservation:ABC123"


def _until(cond: Callable[[], bool]) -> bool:
    """Poll ``cond`` (bounded); whether it became true."""
    return wait_until(cond, timeout=30, interval=0.005)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> Iterator[Callable[[], TieredStore]]:
    """A factory of routers over one shared L2 (SQLite file or Redis namespace)."""
    made: list[TieredStore] = []

    def make() -> TieredStore:
        if request.param == "sqlite":
            store = TieredStore.default(tmp_path / "cache")
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = TieredStore.from_redis(server.url, namespace=ns)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


def test_a_call_after_invalidate_never_joins_an_older_flight_threads(
    make_store: Callable[[], TieredStore],
) -> None:
    store = make_store()
    key = key_for("t", "inflight-sync")
    computing, release = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    def old() -> bytes:
        computing.set()
        assert release.wait(30)
        return b"old"

    def leader() -> None:
        got["leader"] = store.get_or_compute(key, old, tenant="t", entry_type="tool_output", tags=[TAG])

    t = threading.Thread(target=leader)
    t.start()
    assert computing.wait(30)
    store.invalidate(TAG)  # returns while the leader is still computing under the old generation

    def after() -> None:
        got["after"] = store.get_or_compute(
            key, lambda: b"new", tenant="t", entry_type="tool_output", tags=[TAG]
        )

    a = threading.Thread(target=after)
    a.start()
    # it either finishes on its own or parks on the leader's flight (the defect): never wait it out
    assert _until(lambda: not a.is_alive() or store.stats().single_flight_waiters > 0)
    release.set()
    a.join(30)
    t.join(30)
    res = got["after"]
    assert res.payload == b"new", "a call that started after invalidate() got the old value"  # type: ignore[attr-defined]
    assert res.tier is None and res.computed  # type: ignore[attr-defined]
    assert got["leader"].payload == b"old"  # type: ignore[attr-defined]  # the leader's own call is its own
    store.flush()
    hit = store.lookup(key, tenant="t")
    assert hit is None or hit.entry.payload == b"new"  # the leader's late write never wins


async def test_a_call_after_invalidate_never_joins_an_older_flight_asyncio(
    make_store: Callable[[], TieredStore],
) -> None:
    store = make_store()
    key = key_for("t", "inflight-async")
    computing, release = asyncio.Event(), asyncio.Event()

    async def old() -> bytes:
        computing.set()
        await release.wait()
        return b"old"

    async def new() -> bytes:
        return b"new"

    leader = asyncio.create_task(
        store.aget_or_compute(key, old, tenant="t", entry_type="tool_output", tags=[TAG])
    )
    await asyncio.wait_for(computing.wait(), 30)
    await store.ainvalidate(TAG)
    second = asyncio.create_task(
        store.aget_or_compute(key, new, tenant="t", entry_type="tool_output", tags=[TAG])
    )
    # it either finishes on its own or parks on the leader's flight (the defect): never wait it out
    while not second.done() and store.stats().single_flight_waiters == 0:
        await asyncio.sleep(0.005)
    release.set()
    after, first = await second, await leader
    assert after.payload == b"new", "a call that started after invalidate() got the old value"
    assert after.tier is None and after.computed
    assert first.payload == b"old"
    await asyncio.to_thread(store.flush)
    hit = await store.alookup(key, tenant="t")
    assert hit is None or hit.entry.payload == b"new"
    await store.aclose()


def test_callers_of_one_generation_still_share_one_flight(make_store: Callable[[], TieredStore]) -> None:
    """The generation check splits flights only across an invalidation: herds still compute once."""
    store = make_store()
    key = key_for("t", "herd")
    release = threading.Event()
    calls = 0
    lock = threading.Lock()

    def slow() -> bytes:
        nonlocal calls
        with lock:
            calls += 1
        assert release.wait(30)
        return b"v"

    results: list[object] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                store.get_or_compute(key, slow, tenant="t", entry_type="tool_output", tags=[TAG])
            )
        )
        for _ in range(8)
    ]
    for th in threads:
        th.start()
    # every caller has either joined the leader's flight or is about to: wait for the waiters
    stats = store.stats
    assert _until(lambda: stats().single_flight_waiters + stats().single_flight_leaders >= 8)
    release.set()
    for th in threads:
        th.join(30)
    assert calls == 1
    assert store.stats().single_flight_waiters == 7


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_no_process_reads_the_old_value_after_invalidate_returns(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, ns: str
) -> None:
    """Another process is computing the old value; once ``invalidate()`` returns, nobody reads it."""
    server = None if kind == "sqlite" else request.getfixturevalue("redis_server")
    location = str(tmp_path / "cache") if server is None else server.url
    key = key_for("t", "inflight-procs")
    ctx = mp.get_context("spawn")
    q_out, q_in = ctx.Queue(), ctx.Queue()
    leader = ctx.Process(target=_inflight_procs.slow_leader, args=(kind, location, ns, key, TAG, q_out, q_in))
    leader.start()
    store = (
        TieredStore.default(location) if kind == "sqlite" else TieredStore.from_redis(location, namespace=ns)
    )
    try:
        assert q_out.get(timeout=60) == "computing"
        store.invalidate(TAG)
        after = store.get_or_compute(key, lambda: b"new", tenant="t", entry_type="tool_output", tags=[TAG])
        assert after.payload == b"new"
        q_in.put("go")  # the leader returns its old value and writes it (under the old generation)
        assert q_out.get(timeout=60) == ("wrote", b"old")
        leader.join(30)
        reader = ctx.Process(target=_inflight_procs.read_once, args=(kind, location, ns, key, q_out))
        reader.start()
        seen = q_out.get(timeout=60)
        reader.join(30)
        assert seen in (None, b"new"), "another process read the value computed before invalidate()"
        mine = store.lookup(key, tenant="t")
        assert mine is None or mine.entry.payload == b"new"
    finally:
        if leader.is_alive():
            leader.kill()
        store.close()
