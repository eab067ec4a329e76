"""Call ids (``promptcache.llm_bridge.new_call_id``): one per model call, the key a
``cache_metrics`` channel merges records by, so they must never repeat, not even across a fork."""

from __future__ import annotations

import os

from promptcache.llm_bridge import new_call_id


def test_call_ids_are_unique_hex_and_a_forked_child_does_not_repeat_its_parent() -> None:
    ids = [new_call_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids[:100])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, "".join(new_call_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child = f.read()
    parent = "".join(new_call_id() for _ in range(8))
    assert len(child) == len(parent) == 8 * 32 and child != parent
