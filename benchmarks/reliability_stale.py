"""``make reliability`` section ``stale_after_invalidate``: issue 19, items 4 and 5.

Every figure is a count over many trials, and every "stale" count must be 0:

* ``concurrent``: worker threads (and, separately, asyncio tasks) read one tagged key through
  ``get_or_compute`` while an invalidator bumps the truth and invalidates the tag, over and over.
  A read that started after ``invalidate()`` returned and got a value older than the truth at
  that moment is stale (a join of an older flight, a late write of an old value, a stale L1
  copy). SQLite and Redis.
* ``processes``: the same with worker processes; each reads tagged L1 copies only after
  re-checking L2 (``max_staleness_s=0`` and no bus), so the figure is the shared tier's own:
  no value computed before an invalidation is readable after it returns.
* ``flushdb`` / ``redis_restart`` / ``sqlite_replaced``: a copy cached under a tag's generation
  1, the shared tier reset, the tag invalidated once more (generation 1 again): the old copy
  must not be served, in the invalidating process and (``flushdb``) in another one.
* ``two_policies``: two caches with different policies and the same ``version`` on one store;
  the strict one must never be served what the lenient one stored.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptcache.tiers.base import InvalidationFailed

CTX = mp.get_context("spawn")
TAG = "rel:stale"


def _router(kind: str, location: str, ns: str, *, checked: bool = False) -> Any:
    """A router on the shared L2; ``checked``: no bus, tagged L1 copies re-read from L2 every time."""
    from promptcache.invalidation import LocalBus
    from promptcache.tiers import TieredStore
    from promptcache.tiers.redis import RedisStore

    if kind == "sqlite":
        return TieredStore.default(location, max_staleness_s=0.0 if checked else 1.0)
    if checked:
        return TieredStore(l2=RedisStore(location, namespace=ns), bus=LocalBus(), max_staleness_s=0.0)
    return TieredStore.from_redis(location, namespace=ns)


class _Truth:
    """The value a computation reads, and the floor every read started after an invalidation must reach."""

    def __init__(self) -> None:
        self.value = 0
        self.floor = 0


# concurrent: threads and asyncio ---------------------------------------------------------------


def _threads(store: Any, trials: int, workers: int, seed: int) -> dict[str, int]:
    truth, rnd = _Truth(), random.Random(seed)
    key = uuid.uuid4().hex * 2
    counts = {"reads": 0, "stale_reads": 0, "computed": 0, "invalidations_failed": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def compute() -> bytes:
        v = truth.value
        # from a blink to longer than an invalidation takes: some run across one
        time.sleep(rnd.uniform(0, 0.02))
        return str(v).encode()

    def worker() -> None:
        while not stop.is_set():
            floor = truth.floor
            res = store.get_or_compute(key, compute, tenant="t", entry_type="tool_output", tags=[TAG])
            with lock:
                counts["reads"] += 1
                counts["computed"] += res.computed
                counts["stale_reads"] += int(res.payload) < floor
            # think time: some workers are free when an invalidation returns and start a call
            # while the computation that began before it still runs (the in-flight join case)
            time.sleep(rnd.uniform(0, 0.01))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        for _ in range(trials):
            truth.value += 1
            try:
                store.invalidate(TAG)
            except InvalidationFailed:  # raised to the caller: no promise made, the floor stays
                counts["invalidations_failed"] += 1
                continue
            truth.floor = truth.value
            time.sleep(rnd.uniform(0, 0.01))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return counts


async def _tasks(store: Any, trials: int, workers: int, seed: int) -> dict[str, int]:
    truth, rnd = _Truth(), random.Random(seed)
    key = uuid.uuid4().hex * 2
    counts = {"reads": 0, "stale_reads": 0, "computed": 0, "invalidations_failed": 0}
    stop = asyncio.Event()

    async def compute() -> bytes:
        v = truth.value
        await asyncio.sleep(rnd.uniform(0, 0.02))
        return str(v).encode()

    async def worker() -> None:
        while not stop.is_set():
            floor = truth.floor
            res = await store.aget_or_compute(key, compute, tenant="t", entry_type="tool_output", tags=[TAG])
            counts["reads"] += 1
            counts["computed"] += res.computed
            counts["stale_reads"] += int(res.payload) < floor
            await asyncio.sleep(rnd.uniform(0, 0.01))

    running = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        for _ in range(trials):
            truth.value += 1
            try:
                await store.ainvalidate(TAG)
            except InvalidationFailed:
                counts["invalidations_failed"] += 1
                continue
            truth.floor = truth.value
            await asyncio.sleep(rnd.uniform(0, 0.01))
    finally:
        stop.set()
        await asyncio.gather(*running)
    return counts


def _concurrent(kind: str, location: str, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ns = "rs" + uuid.uuid4().hex[:8]
    store = _router(kind, location, ns)
    try:
        out["threads"] = _threads(store, trials, workers=6, seed=1)

        async def run() -> dict[str, int]:
            try:
                return await _tasks(store, trials, workers=6, seed=2)
            finally:
                await store.aclose()

        out["asyncio"] = asyncio.run(run())
    finally:
        store.close()
    out["invalidations"] = trials
    return out


# processes ---------------------------------------------------------------------------------------


def process_worker(
    kind: str, location: str, ns: str, key: str, value: Any, floor: Any, stop: Any, q: Any, ready: Any
) -> None:
    """Read ``key`` until ``stop``; count reads that got a value below the floor at their start."""
    store = _router(kind, location, ns, checked=True)
    reads = stale = 0

    def compute() -> bytes:
        v = value.value
        time.sleep(0.0005)
        return str(v).encode()

    try:
        store.get_or_compute(key, compute, tenant="t", entry_type="tool_output", tags=[TAG])
        ready.put(True)
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            f = floor.value
            res = store.get_or_compute(key, compute, tenant="t", entry_type="tool_output", tags=[TAG])
            reads += 1
            stale += int(res.payload) < f
        q.put({"reads": reads, "stale_reads": stale})
    finally:
        store.close()


def _processes(kind: str, location: str, trials: int) -> dict[str, Any]:
    ns = "rp" + uuid.uuid4().hex[:8]
    key = uuid.uuid4().hex * 2
    value, floor, stop, q, ready = CTX.Value("q", 0), CTX.Value("q", 0), CTX.Event(), CTX.Queue(), CTX.Queue()
    procs = [
        CTX.Process(target=process_worker, args=(kind, location, ns, key, value, floor, stop, q, ready))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    store = _router(kind, location, ns, checked=True)
    rnd = random.Random(3)
    failed = 0
    try:
        for _ in procs:  # every worker reads before the first invalidation
            ready.get(timeout=120)
        for _ in range(trials):
            with value.get_lock():
                value.value += 1
            try:
                store.invalidate(TAG)
            except InvalidationFailed:
                failed += 1
                continue
            floor.value = value.value
            time.sleep(rnd.uniform(0, 0.01))
    finally:
        stop.set()
        store.close()
    res = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(10)
    return {
        "processes": len(procs),
        "invalidations": trials,
        "invalidations_failed": failed,
        "reads": sum(r["reads"] for r in res),
        "stale_reads": sum(r["stale_reads"] for r in res),
    }


# reset stores ------------------------------------------------------------------------------------


def _cache_under_gen_1(store: Any, key: str) -> bool:
    store.invalidate(TAG)
    store.get_or_compute(key, lambda: b"before", tenant="t", entry_type="tool_output", tags=[TAG])
    store.flush()
    hit = store.lookup(key, tenant="t")
    return hit is not None and hit.tier == "l1"


def _flushdb(url: str, trials: int) -> dict[str, Any]:
    import redis

    served_here = served_there = epoch_changes = 0
    client = redis.Redis.from_url(url)
    for _ in range(trials):
        ns = "rf" + uuid.uuid4().hex[:8]
        a, b = _router("redis", url, ns), _router("redis", url, ns)
        try:
            a.bus.wait_subscribed(5.0)
            b.bus.wait_subscribed(5.0)
            ka, kb = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
            assert _cache_under_gen_1(a, ka) and _cache_under_gen_1(b, kb)
            client.flushdb()
            a.invalidate(TAG)  # generation 1 again, in a new store epoch
            served_here += a.lookup(ka, tenant="t") is not None
            # b hears it on the bus (the other process's bound is the bus delivery)
            deadline = time.monotonic() + 5
            while b.lookup(kb, tenant="t") is not None and time.monotonic() < deadline:
                time.sleep(0.005)
            served_there += b.lookup(kb, tenant="t") is not None
            epoch_changes += a.stats().epoch_changes + b.stats().epoch_changes
        finally:
            a.close()
            b.close()
    client.close()
    return {
        "trials": trials,
        "stale_served_invalidating_process": served_here,
        "stale_served_other_process_after_bus_delivery": served_there,
        "epoch_changes_seen": epoch_changes,
    }


def _redis_restart(tmp: Path, trials: int) -> dict[str, Any]:
    from benchmarks.reliability_infra import RedisProc

    server = RedisProc(tmp / "redis-restart")
    served = epoch_changes = 0
    try:
        for _ in range(trials):
            store = _router("redis", server.url, "rr" + uuid.uuid4().hex[:8])
            try:
                key = uuid.uuid4().hex * 2
                assert _cache_under_gen_1(store, key)
                server.stop()
                server.start()
                deadline = time.monotonic() + 10
                while True:  # the first commands after the restart may meet a dead connection
                    try:
                        store.invalidate(TAG)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                served += store.lookup(key, tenant="t") is not None
                epoch_changes += store.stats().epoch_changes
            finally:
                store.close()
    finally:
        server.stop()
    return {"trials": trials, "stale_served": served, "epoch_changes_seen": epoch_changes}


def _sqlite_replaced(tmp: Path, trials: int) -> dict[str, Any]:
    from promptcache.tiers.sqlite import _REOPEN_CHECK_S

    served = epoch_changes = 0
    for i in range(trials):
        root = tmp / f"replaced-{i}"
        store = _router("sqlite", str(root), "")
        try:
            key = uuid.uuid4().hex * 2
            assert _cache_under_gen_1(store, key)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{root / 'promptcache.sqlite3'}{suffix}").unlink(missing_ok=True)
            time.sleep(_REOPEN_CHECK_S + 0.1)  # every connection notices a replaced file within this
            store.invalidate(TAG)  # generation 1 in the new file
            served += store.lookup(key, tenant="t") is not None
            epoch_changes += store.stats().epoch_changes
        finally:
            store.close()
    return {"trials": trials, "stale_served": served, "epoch_changes_seen": epoch_changes}


# two policies ------------------------------------------------------------------------------------


def _two_policies(kind: str, location: Callable[[], Any], trials: int) -> dict[str, Any]:
    from promptcache import PromptCache
    from promptcache.artifacts import LookupReason, ToolSpec

    lenient = PromptCache(
        {"data_classes": {"pii.email": {"action": "allow"}}}, store=location(), record_stats=False
    )
    strict = PromptCache(
        {"data_classes": {"pii.email": {"action": "deny", "max_ttl": None}}},
        store=location(),
        record_stats=False,
    )
    spec = ToolSpec(name="contact", side_effect="read_only")
    stored = served = mismatches = 0
    try:
        for i in range(trials):
            value = {"id": i, "mail": f"user{i}@example.com"}
            stored += lenient.tools.call(spec, {"id": i}, lambda id, v=value: v, tenant="acme").lookup.stored
            lenient.store.flush()
            res = strict.tools.call(spec, {"id": i}, lambda id: {"id": id}, tenant="acme")
            served += res.lookup.hit
            mismatches += res.lookup.reason is LookupReason.POLICY_MISMATCH
    finally:
        lenient.close()
        strict.close()
    return {
        "trials": trials,
        "stored_by_lenient": stored,
        "served_to_strict": served,
        "policy_mismatch_misses": mismatches,
    }


# the section -------------------------------------------------------------------------------------


def stale_after_invalidate(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """Stale reads after ``invalidate()`` under concurrency, reset stores and two policies: all 0."""
    from promptcache.tiers import TieredStore

    trials = 40 if quick else 200
    out: dict[str, Any] = {"sqlite": {}, "redis": {}}
    out["sqlite"]["concurrent"] = _concurrent("sqlite", str(tmp / "stale-sqlite"), trials)
    out["sqlite"]["processes"] = _processes("sqlite", str(tmp / "stale-sqlite-procs"), trials // 2)
    out["sqlite"]["sqlite_replaced"] = _sqlite_replaced(tmp, 2 if quick else 5)
    out["sqlite"]["two_policies"] = _two_policies("sqlite", lambda: str(tmp / "two-policies"), trials // 4)
    if redis_url:
        out["redis"]["concurrent"] = _concurrent("redis", redis_url, trials)
        out["redis"]["processes"] = _processes("redis", redis_url, trials // 2)
        out["redis"]["flushdb"] = _flushdb(redis_url, 5 if quick else 20)
        out["redis"]["redis_restart"] = _redis_restart(tmp, 2 if quick else 5)
        ns = "rt" + uuid.uuid4().hex[:8]
        out["redis"]["two_policies"] = _two_policies(
            "redis", lambda: TieredStore.from_redis(redis_url, namespace=ns), trials // 4
        )
    else:
        out["redis"] = {"error": "redis-server not installed"}
    stale = _stale_counts(out)
    out["stale_reads_total"] = sum(stale.values())
    out["stale_by_case"] = stale
    out["passed"] = bool(redis_url) and out["stale_reads_total"] == 0 and _exercised(out)
    return out


def _stale_counts(out: dict[str, Any]) -> dict[str, int]:
    """Every count that must be 0, by case."""
    found: dict[str, int] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif prefix.rsplit(".", 1)[-1] in _MUST_BE_ZERO:
            found[prefix] = int(node)

    walk("", {k: v for k, v in out.items() if k in ("sqlite", "redis")})
    return found


_MUST_BE_ZERO = frozenset(
    {
        "stale_reads",
        "stale_served",
        "stale_served_invalidating_process",
        "stale_served_other_process_after_bus_delivery",
        "served_to_strict",
    }
)


def _exercised(out: dict[str, Any]) -> bool:
    """The cases did what they test: reads after invalidations, resets seen, entries stored."""
    ok = True
    for kind in ("sqlite", "redis"):
        sec = out[kind]
        for mode in ("threads", "asyncio"):
            ok &= sec["concurrent"][mode]["reads"] > sec["concurrent"]["invalidations"]
        ok &= sec["processes"]["reads"] > 0
        ok &= sec["two_policies"]["stored_by_lenient"] == sec["two_policies"]["trials"]
        ok &= sec["two_policies"]["policy_mismatch_misses"] == sec["two_policies"]["trials"]
    ok &= out["sqlite"]["sqlite_replaced"]["epoch_changes_seen"] >= out["sqlite"]["sqlite_replaced"]["trials"]
    ok &= out["redis"]["flushdb"]["epoch_changes_seen"] >= out["redis"]["flushdb"]["trials"]
    return bool(ok)
