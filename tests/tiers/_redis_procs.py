"""Functions run in spawned child processes by the Redis race tests (must be importable)."""

from __future__ import annotations

import time
from typing import Any

from promptcache.tiers import Entry
from promptcache.tiers.redis import RedisStore


def racing_writer(url: str, namespace: str, tag: str, keys: list[str], stop: Any, out: Any) -> None:
    """Write ``keys`` over and over, each under the generation of ``tag`` read just before.

    Each write is what a worker does: read the tag's generation, compute, store.
    Between the read and the store another process may invalidate the tag; the
    store must then refuse the write. Runs until ``stop`` is set (at most 60 s)
    and puts (writes attempted, writes refused) on ``out``.
    """
    store = RedisStore(url, namespace=namespace, socket_timeout=5.0)
    attempted = 0
    deadline = time.monotonic() + 60
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            key = keys[attempted % len(keys)]
            gens = store.tag_generations([tag])
            e = Entry.new(
                key,
                b"%d" % gens[tag],
                tenant="t",
                entry_type="tool_output",
                created_at=time.time(),
                tags=gens,
            )
            store.put(e)
            attempted += 1
        out.put((attempted, store.stats().stale))
    finally:
        store.close()
