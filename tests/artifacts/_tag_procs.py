"""Child-process side of the cross-tenant invalidation test (must be importable by spawn)."""

from __future__ import annotations

from typing import Any

READ_SPEC = {
    "name": "get_reservation",
    "side_effect": "read_only",
    "tags": ["reservation:{rid}"],
    "ttl": 3600,
}


def tenant_b_reader(location: str, q_out: Any, q_in: Any) -> None:
    """Tenant B caches reservation R1, then, once told, reports whether it is still served from L2.

    Reports ("ready", hit) after the second read, then ("after", hit, tier, value) after
    the parent says tenant A wrote and invalidated ``reservation:R1``. L1 never vouches
    for a tagged entry here (``max_staleness_s=0``): every read goes to the shared file.
    """
    from promptcache.artifacts import ToolOutputCache, ToolSpec, open_store

    store = open_store(location, max_staleness_s=0.0)
    tools = ToolOutputCache(store)
    read = ToolSpec.model_validate(READ_SPEC)

    def call() -> Any:
        return tools.call(read, {"rid": "R1"}, lambda rid: {"rid": rid, "owner": "B"}, tenant="B")

    call()
    store.flush()  # the write-back has reached the file before the second read
    second = call()
    q_out.put(("ready", second.lookup.hit))
    q_in.get(timeout=60)
    after = call()
    q_out.put(("after", after.lookup.hit, after.lookup.tier, after.value["owner"]))
    store.close()
