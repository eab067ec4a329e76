"""Functions run in spawned child processes by the cross-process tests (must be importable)."""

from __future__ import annotations

import time
from typing import Any

from promptcache.tiers import SQLiteStore, TieredStore


def sqlite_writer(path: str, worker: int, n: int, tag_name: str) -> int:
    """Write ``n`` entries into the shared SQLite file; returns how many writes succeeded."""
    from promptcache.tiers import Entry

    store = SQLiteStore(path)
    ok = 0
    try:
        for i in range(n):
            e = Entry.new(
                f"{worker:02d}{i:062d}",
                f"w{worker}-{i}".encode(),
                tenant="t",
                entry_type="metadata",
                created_at=time.time(),
                tags={tag_name: 0},
            )
            store.put(e)
            ok += 1
    finally:
        store.close()
    return ok


def watcher(kind: str, location: str, key: str, q_out: Any, q_in: Any, max_staleness: float) -> None:
    """Cache ``key`` in this process's L1, report, then poll until it stops being served.

    Reports ("ready", None), then ("gone", seconds since told / -1 on timeout, via_bus).
    """
    if kind == "redis":
        store = TieredStore.from_redis(location, max_staleness_s=max_staleness)
        assert store.bus is not None
        getattr(store.bus, "wait_subscribed", lambda t: True)(5.0)
    else:
        store = TieredStore.default(location, max_staleness_s=max_staleness)
    try:
        got = store.get(key, tenant="t")
        assert got is not None, "the parent wrote the entry first"
        assert store.get(key, tenant="t") is not None  # now an L1 hit
        q_out.put(("ready", store.stats().tiers["l1"].hits))
        q_in.get(timeout=30)  # the parent has invalidated
        told = time.monotonic()
        deadline = told + 10
        while time.monotonic() < deadline:
            if store.get(key, tenant="t") is None:
                q_out.put(("gone", time.monotonic() - told, store.stats().tiers["l1"].stale))
                return
            time.sleep(0.005)
        q_out.put(("gone", -1.0, 0))
    finally:
        store.close()
