"""Tier latencies next to the bare client doing the same operation, in the same run.

``run()`` returns per-operation p50/p99 in microseconds and the ratios the
targets are stated in: L1 hit ≤ 5 µs; Redis L2 hit ≤ 1.5x a bare redis-py GET
of the same bytes; SQLite L2 hit ≤ 100 µs p50. Single-flight: 64 concurrent
misses on one key (threads and asyncio) and how many computations they caused.
A redis-server is started on a free loopback port if one is installed.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptcache.tiers import Entry, MemoryStore, SQLiteStore, TieredStore

PAYLOAD = b"x" * 1024
N = 3000


def _key(i: int) -> str:
    return hashlib.sha256(b"bench%d" % i).hexdigest()


def _measure(fn: Callable[[], object], n: int = N) -> list[float]:
    for _ in range(min(200, n)):
        fn()
    out = []
    gc.disable()
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t0) / 1000.0)
    finally:
        gc.enable()
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_us": round(statistics.median(s), 2),
        "p99_us": round(s[min(len(s) - 1, int(len(s) * 0.99))], 2),
        "n": len(s),
    }


def _pair(tier: Callable[[], object], bare: Callable[[], object], rounds: int = 5) -> tuple[dict, dict]:
    """Interleave tier and bare samples in rounds so that machine noise hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        b += _measure(bare, N // rounds)
        a += _measure(tier, N // rounds)
    return _summary(a), _summary(b)


def _entry(key: str, tags: dict[str, int] | None = None) -> Entry:
    return Entry.new(key, PAYLOAD, tenant="t", entry_type="bench", created_at=time.time(), tags=tags or {})


def bench_memory() -> dict[str, Any]:
    """L1 and the router's L1 path next to a dict lookup."""
    m = MemoryStore()
    d: dict[str, bytes] = {}
    k = _key(1)
    m.put(_entry(k))
    d[k] = PAYLOAD
    router = TieredStore()
    router.put(k, PAYLOAD, tenant="t", entry_type="bench", tags=["policy:v12"])
    l1, bare = _pair(lambda: m.get(k), lambda: d.get(k))
    routed, _ = _pair(lambda: router.get(k, tenant="t"), lambda: d.get(k))
    put = _summary(_measure(lambda: m.put(_entry(k))))
    rput = _summary(
        _measure(lambda: router.put(k, PAYLOAD, tenant="t", entry_type="bench", tags=["policy:v12"]))
    )
    router.close()
    return {
        "dict_get": bare,
        "l1_get": l1,
        "router_l1_hit": routed,
        "l1_put": put,
        "router_put_l1_only": rput,
        "target_router_l1_hit_p50_le_5us": routed["p50_us"] <= 5.0,
    }


def bench_sqlite(root: Path) -> dict[str, Any]:
    """SQLite L2 next to a bare SELECT of the same row through sqlite3."""
    store = SQLiteStore(root / "bench.sqlite3")
    k = _key(2)
    store.put(_entry(k, {"policy:v12": 0}))
    raw = sqlite3.connect(root / "bench.sqlite3", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")

    def bare() -> object:
        return raw.execute("SELECT data FROM pc_entries WHERE key = ?", (k,)).fetchone()

    tier, bare_s = _pair(lambda: store.get(k), bare)
    router = TieredStore(l2=store)

    def l2_hit() -> object:
        router.l1.delete(k)
        return router.get(k, tenant="t")

    routed, _ = _pair(l2_hit, bare)
    put = _summary(_measure(lambda: store.put(_entry(k, {"policy:v12": 0})), 1000))
    router.close()
    raw.close()
    return {
        "bare_select": bare_s,
        "sqlite_get": tier,
        "router_l2_sqlite_hit": routed,
        "sqlite_put": put,
        "ratio_get_vs_bare_p50": round(tier["p50_us"] / bare_s["p50_us"], 2),
        "target_sqlite_hit_p50_le_100us": tier["p50_us"] <= 100.0,
    }


def _start_redis(root: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(8).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    return None


def bench_redis(root: Path) -> dict[str, Any]:
    """Redis L2 next to a bare redis-py GET of the same bytes (a hit is one plain GET plus decoding).

    Also the costs the layout moves off the hit path: a tagged put (one script)
    and an invalidation (one script per bucket, deleting the tag's entries).
    """
    import redis

    from promptcache.tiers.redis import RedisStore

    started = _start_redis(root)
    if started is None:
        return {"skipped": "redis-server not installed"}
    proc, port = started
    try:
        url = f"redis://127.0.0.1:{port}/0"
        store = RedisStore(url, namespace="bench")
        k = _key(3)
        e = _entry(k, {"policy:v12": 0})
        store.put(e)
        bare_client = redis.Redis(port=port)
        bare_client.set("bare", store.client.get(store.entry_key(k)))
        tier, bare = _pair(lambda: store.get(k), lambda: bare_client.get("bare"))
        router = TieredStore(l2=store)

        def l2_hit() -> object:
            router.l1.delete(k)
            return router.get(k, tenant="t")

        routed, _ = _pair(l2_hit, lambda: bare_client.get("bare"))
        keys = [_key(100 + i) for i in range(32)]
        for kk in keys:
            store.put(_entry(kk))
        bare_keys = [f"bare{i}" for i in range(32)]
        bare_client.mset({bk: PAYLOAD for bk in bare_keys})
        many, bare_many = _pair(lambda: store.get_many(keys), lambda: bare_client.mget(bare_keys), 3)
        put, bare_set = _pair(lambda: store.put(e), lambda: bare_client.set("bare", PAYLOAD), 3)
        untagged = _entry(_key(4))
        put_untagged = _summary(_measure(lambda: store.put(untagged), 1000))
        # the work a hit no longer does moved here: a new generation, then one script per bucket
        invalidate = _summary(_measure(lambda: store.invalidate_tag("bench:empty"), 1000))
        full: list[float] = []
        for _ in range(50):
            gen = store.tag_generations(["bench:full"])
            for i in range(100):
                store.put(_entry(_key(200 + i), gen))
            t0 = time.perf_counter_ns()
            store.invalidate_tag("bench:full")
            full.append((time.perf_counter_ns() - t0) / 1000.0)
        router.close()
        bare_client.close()
        return {
            "bare_get": bare,
            "redis_get": tier,
            "router_l2_redis_hit": routed,
            "ratio_get_vs_bare_p50": round(tier["p50_us"] / bare["p50_us"], 2),
            "ratio_router_l2_vs_bare_p50": round(routed["p50_us"] / bare["p50_us"], 2),
            "target_redis_hit_le_1_5x_bare": tier["p50_us"] <= 1.5 * bare["p50_us"],
            "bare_mget_32": bare_many,
            "redis_get_many_32": many,
            "ratio_get_many_vs_mget_p50": round(many["p50_us"] / bare_many["p50_us"], 2),
            "bare_set": bare_set,
            "redis_put": put,
            "redis_put_untagged": put_untagged,
            "redis_invalidate_tag_no_entries": invalidate,
            "redis_invalidate_tag_100_entries": _summary(full),
        }
    finally:
        proc.terminate()
        proc.wait(5)


def bench_single_flight() -> dict[str, Any]:
    """64 concurrent misses on one key with a 20 ms computation."""
    store = TieredStore()
    calls = 0
    lock = threading.Lock()

    def compute() -> bytes:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.02)
        return PAYLOAD

    barrier = threading.Barrier(64)

    def worker() -> None:
        barrier.wait()
        store.get_or_compute(_key(9), compute, tenant="t", entry_type="bench")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threaded_ms = (time.perf_counter() - t0) * 1000

    acalls = 0

    async def acompute() -> bytes:
        nonlocal acalls
        acalls += 1
        await asyncio.sleep(0.02)
        return PAYLOAD

    async def many() -> float:
        t = time.perf_counter()
        await asyncio.gather(
            *(store.aget_or_compute(_key(10), acompute, tenant="t", entry_type="bench") for _ in range(64))
        )
        return (time.perf_counter() - t) * 1000

    async_ms = asyncio.run(many())
    store.close()
    return {
        "threads_64_computations": calls,
        "threads_64_wall_ms": round(threaded_ms, 1),
        "asyncio_64_computations": acalls,
        "asyncio_64_wall_ms": round(async_ms, 1),
        "compute_ms": 20,
    }


def run() -> dict[str, Any]:
    """Every tier benchmark; JSON-serializable."""
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as d:
        root = Path(d)
        return {
            "payload_bytes": len(PAYLOAD),
            "memory": bench_memory(),
            "sqlite": bench_sqlite(root),
            "redis": bench_redis(root),
            "single_flight": bench_single_flight(),
        }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
