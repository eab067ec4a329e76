"""Child processes of the in-flight invalidation tests (spawned: must be importable)."""

from __future__ import annotations

from typing import Any

from promptcache.tiers import TieredStore


def _open(kind: str, location: str, ns: str) -> TieredStore:
    if kind == "sqlite":
        return TieredStore.default(location)
    return TieredStore.from_redis(location, namespace=ns)


def slow_leader(kind: str, location: str, ns: str, key: str, tag: str, q_out: Any, q_in: Any) -> None:
    """Compute ``key`` under ``tag``'s current generation, held until the parent says go.

    Reports "computing" once the generations are read and the computation runs, then
    ("wrote", payload) after the write reached the shared tier.
    """
    store = _open(kind, location, ns)

    def old() -> bytes:
        q_out.put("computing")
        q_in.get(timeout=60)
        return b"old"

    try:
        res = store.get_or_compute(key, old, tenant="t", entry_type="tool_output", tags=[tag])
        store.flush()
        q_out.put(("wrote", res.payload))
    finally:
        store.close()


def read_once(kind: str, location: str, ns: str, key: str, q_out: Any) -> None:
    """A fresh process's read of ``key``: the payload, or None."""
    store = _open(kind, location, ns)
    try:
        hit = store.lookup(key, tenant="t")
        q_out.put(None if hit is None else hit.entry.payload)
    finally:
        store.close()
