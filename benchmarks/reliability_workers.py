"""Functions run in spawned worker processes by ``benchmarks.reliability`` (importable, picklable results).

Workers never print payloads or prompts; they return timings, tiers and counts.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from typing import Any

READ = {"name": "get_reservation", "side_effect": "read_only", "tags": ["reservation:{rid}"], "ttl": 3600}
WRITE = {
    "name": "update_reservation",
    "side_effect": "idempotent_write",
    "invalidates": ["reservation:{rid}"],
}


def make_value(rid: str, size: int, rng: random.Random) -> dict[str, Any]:
    """A payload that carries its own checksum (over its key and data)."""
    data = rng.randbytes(size // 2).hex()
    return {"rid": rid, "data": data, "sha": hashlib.sha256(f"{rid}|{data}".encode()).hexdigest()}


def value_ok(rid: str, value: Any) -> bool:
    """Whether a served value is intact and belongs to ``rid``."""
    if not isinstance(value, dict) or value.get("rid") != rid:
        return False
    return hashlib.sha256(f"{rid}|{value.get('data')}".encode()).hexdigest() == value.get("sha")


def docs_ok(rid: str, docs: Any) -> bool:
    """Whether served documents are intact and belong to ``rid``."""
    try:
        return len(docs) == 1 and value_ok(rid, docs[0]["metadata"])
    except (TypeError, KeyError, IndexError):
        return False


def fault_worker(
    location: str, wid: int, t0: float, duration: float, size: int, blob_threshold: int | None, q: Any
) -> None:
    """Agent-shaped calls (tool read/write, retrieval, prepare_request) for ``duration`` seconds.

    Puts one result: events ``(t, op, ok, tier, ms, corrupt, error)`` and the router's counters.
    """
    from benchmarks.reliability_corpus import agent_body
    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store

    kw: dict[str, Any] = {"max_staleness_s": 1.0}
    if blob_threshold is not None:
        kw["blob_threshold"] = blob_threshold
    store = open_store(location, **kw)
    cache = PromptCache(store=store)
    read, write = ToolSpec.model_validate(READ), ToolSpec.model_validate(WRITE)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    rng = random.Random(wid)
    events: list[tuple[float, str, bool, str | None, float, bool, str | None]] = []
    stored: list[tuple[float, str, str]] = []
    while time.time() - t0 < duration:
        now = time.time() - t0
        rid = f"R{max(0, int(now * 20) - rng.randint(0, 20))}"
        op = rng.choices(["tool", "retrieve", "prepare", "write"], [5, 3, 2, 0.3])[0]
        t = time.perf_counter()
        tier: str | None = None
        corrupt = False
        err: str | None = None
        try:
            if op == "tool":
                out = cache.tools.call(
                    read, {"rid": rid}, lambda rid: make_value(rid, size, rng), tenant="acme"
                )
                corrupt = not value_ok(rid, out.value)
                tier = out.lookup.tier
                if out.lookup.stored:
                    stored.append((now, "tool", rid))
            elif op == "retrieve":
                res = cache.retrieval.retrieve(
                    rid,
                    lambda q: [{"id": q, "text": "doc", "metadata": make_value(q, size, rng)}],
                    tenant="acme",
                    retriever=kb,
                )
                corrupt = not docs_ok(rid, res.value)
                tier = res.lookup.tier
                if res.lookup.stored:
                    stored.append((now, "retrieve", rid))
            elif op == "write":
                cache.tools.call(write, {"rid": rid}, lambda rid: {"ok": True}, tenant="acme")
            else:
                tool_out = cache.tools.call(
                    read, {"rid": rid}, lambda rid: make_value(rid, size, rng), tenant="acme"
                ).value
                cache.prepare_request(
                    agent_body("anthropic-messages", str(tool_out.get("sha")), "doc"),
                    format="anthropic-messages",
                    tenant="acme",
                )
            ok = True
        except Exception as exc:  # an escaped exception is a failed agent call: counted, never hidden
            ok, err = False, type(exc).__name__
        events.append((now, op, ok, tier, (time.perf_counter() - t) * 1000, corrupt, err))
    st = store.stats()
    counters = {
        "l2_tier_skipped": st.tiers["l2"].tier_skipped,
        "l3_tier_skipped": st.tiers["l3"].tier_skipped,
        "l2_corrupt": st.tiers["l2"].corrupt,
        "writeback_failed": st.writeback_failed,
        "writeback_dropped": st.writeback_dropped,
        "tools": cache.tools.stats().model_dump(),
        "retrieval": cache.retrieval.stats().model_dump(),
    }
    store.close(timeout=2)
    q.put({"wid": wid, "events": events, "stored": stored, "counters": counters})


# freshness -------------------------------------------------------------------------


def _truth(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def freshness_worker(location: str, truth: str, wid: int, n_ops: int, n_rids: int, q: Any) -> None:
    """Randomized reads and writes of a system of record through the cache; logs what each read saw.

    A write bumps the record's version in ``truth`` and then invalidates its tag;
    ``("w", rid, version, t_invalidate_returned)`` is logged after ``invalidate()``
    returns. Reads log ``("r", rid, version_served, t_started, tier)``. Retrieval
    reads use the index version in ``truth`` and log the version they were served
    under; a policy version in ``truth`` decides the cache's policy.
    """
    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
    from promptcache.policy import Policy

    store = open_store(location, max_staleness_s=1.0)
    if hasattr(store.bus, "wait_subscribed"):
        store.bus.wait_subscribed(5.0)
    db = _truth(truth)
    read = ToolSpec.model_validate(READ)
    rng = random.Random(1000 + wid)
    log: list[tuple[Any, ...]] = []
    caches: dict[str, PromptCache] = {}

    def cache_for(pv: str) -> PromptCache:
        if pv not in caches:
            caches[pv] = PromptCache(Policy(version=pv), store=store)
        return caches[pv]

    def meta(name: str) -> str:
        return str(db.execute("SELECT v FROM meta WHERE k=?", (name,)).fetchone()[0])

    def version(rid: str) -> int:
        return int(db.execute("SELECT v FROM rec WHERE rid=?", (rid,)).fetchone()[0])

    errors = 0
    for _ in range(n_ops):
        rid = f"R{rng.randrange(n_rids)}"
        op = rng.choices(["read", "write", "retrieve"], [6, 1, 3])[0]
        try:
            pv = meta("policy")
            cache = cache_for(pv)
            if op == "write":
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE rec SET v=v+1 WHERE rid=?", (rid,))
                v = version(rid)
                db.execute("COMMIT")
                cache.invalidate(f"reservation:{rid}")
                log.append(("w", rid, v, time.monotonic(), wid))
            elif op == "read":
                t = time.monotonic()
                out = cache.tools.call(
                    read, {"rid": rid}, lambda rid, pv=pv: {"v": version(rid), "pv": pv}, tenant="acme"
                )
                log.append(("r", rid, out.value["v"], t, wid, out.lookup.tier, out.value["pv"], pv))
            else:
                t = time.monotonic()
                iv = meta("index")
                kb = RetrieverSpec(name="kb", index_version=iv, ttl=3600)
                res = cache.retrieval.retrieve(
                    rid,
                    lambda q, iv=iv, pv=pv: [{"id": q, "text": "d", "metadata": {"iv": iv, "pv": pv}}],
                    tenant="acme",
                    retriever=kb,
                )
                m = res.value[0]["metadata"]
                log.append(("i", rid, m["iv"], t, wid, res.lookup.tier, m["pv"], pv, iv))
        except Exception:
            errors += 1
            if db.in_transaction:
                db.execute("ROLLBACK")
    store.close(timeout=2)
    q.put({"wid": wid, "log": log, "errors": errors})


# load --------------------------------------------------------------------------------


def load_worker(url: str, wid: int, duration: float, n_keys: int, q: Any) -> None:
    """Lookups through the router with L1 off the path (fresh L1 per batch) vs bare redis-py GET
    (the tier's own read is one GET)."""
    import redis

    from promptcache.tiers.memory import MemoryStore
    from promptcache.tiers.router import TieredStore

    store = TieredStore.from_redis(url, l1=MemoryStore(max_entries=1))
    rng = random.Random(wid)
    lat: list[float] = []
    hits = 0
    end = time.monotonic() + duration
    n = 0
    while time.monotonic() < end:
        k = f"load:{rng.randrange(n_keys)}"
        store.l1.clear()
        t = time.perf_counter()
        hit = store.lookup(k, tenant="acme")
        lat.append((time.perf_counter() - t) * 1e3)
        hits += hit is not None
        n += 1
    l1_lat: list[float] = []
    store2 = TieredStore.from_redis(url)
    for i in range(200):
        store2.lookup(f"load:{i % n_keys}", tenant="acme")
    end = time.monotonic() + duration / 3
    while time.monotonic() < end:
        k = f"load:{rng.randrange(min(200, n_keys))}"
        t = time.perf_counter()
        store2.lookup(k, tenant="acme")
        l1_lat.append((time.perf_counter() - t) * 1e3)
    bare: list[float] = []
    r = redis.Redis.from_url(url)
    end = time.monotonic() + duration / 2
    while time.monotonic() < end:
        t = time.perf_counter()
        r.get(f"bare:{rng.randrange(n_keys)}")
        bare.append((time.perf_counter() - t) * 1e3)
    store.close(timeout=1)
    store2.close(timeout=1)
    q.put({"wid": wid, "lat": lat, "hits": hits, "l1_lat": l1_lat, "bare": bare, "duration": duration})


def herd_worker(url: str, wid: int, key: str, threads: int, go_at: float, compute_s: float, q: Any) -> None:
    """``threads`` threads of this process ask for the same missing key at ``go_at``; counts computations."""
    import threading

    from promptcache.tiers.router import TieredStore

    store = TieredStore.from_redis(url)
    computed = 0
    lock = threading.Lock()
    served: list[str | None] = []

    def fn() -> bytes:
        nonlocal computed
        with lock:
            computed += 1
        time.sleep(compute_s)
        return b"x" * 64

    def one() -> None:
        while time.time() < go_at:
            time.sleep(0.0005)
        res = store.get_or_compute(key, fn, tenant="acme", entry_type="tool_output", ttl_s=60)
        with lock:
            served.append(res.tier)

    ts = [threading.Thread(target=one) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    store.close(timeout=1)
    q.put({"wid": wid, "computed": computed, "callers": threads, "tiers": served})
