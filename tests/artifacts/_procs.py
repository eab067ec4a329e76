"""Functions run in spawned child processes by the cross-process artifact tests (must be importable).

The "truth" (the system of record the tools and the retriever read) is a JSON
file both sides can read, so a child can tell a fresh answer from a stale one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

READ_SPEC = {
    "name": "get_reservation",
    "side_effect": "read_only",
    "tags": ["reservation:{rid}"],
    "ttl": 3600,
}
KB_SPEC = {"name": "kb", "index_version": "7", "ttl": 3600}


def read_truth(path: str) -> dict[str, Any]:
    """The current system of record."""
    return dict(json.loads(Path(path).read_text()))


def write_truth(path: str, data: dict[str, Any]) -> None:
    """Replace the system of record atomically (readers never see half a file)."""
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def artifact_watcher(
    kind: str, location: str, truth: str, q_out: Any, q_in: Any, max_staleness: float, warm: bool
) -> None:
    """Cache a tool output and a retrieval result (if ``warm``), then report how long stale copies live.

    Reports ("ready", tool_tier, retrieval_tier) once both are served from this
    process's L1 (or "ready", None, None when not warm), then, after the parent
    says it changed the truth and invalidated, ("done", tool_s, retrieval_s,
    stale_after_bound, first_fresh): seconds until the fresh answer was served
    (-1 if never), how many stale answers were served after the staleness bound,
    and whether the very first reads were both fresh.
    """
    from promptcache.artifacts import RetrievalCache, RetrieverSpec, ToolOutputCache, ToolSpec, open_store

    store = open_store(location, max_staleness_s=max_staleness)
    if kind == "redis":
        store.bus.wait_subscribed(5.0)  # type: ignore[attr-defined]
    tools, rc = ToolOutputCache(store), RetrievalCache(store)
    read, kb = ToolSpec.model_validate(READ_SPEC), RetrieverSpec.model_validate(KB_SPEC)

    def tool() -> tuple[int, str | None]:
        out = tools.call(read, {"rid": "A"}, lambda rid: read_truth(truth)["reservation"][rid], tenant="acme")
        return int(out.value["version"]), out.lookup.tier

    def docs() -> tuple[int, str | None]:
        out = rc.retrieve("refund policy", lambda q: read_truth(truth)["docs"], tenant="acme", retriever=kb)
        return int(out.value[0]["metadata"]["version"]), out.lookup.tier

    try:
        if warm:
            tool(), docs()
            store.flush()
            q_out.put(("ready", tool()[1], docs()[1]))
        else:
            q_out.put(("ready", None, None))
        want = q_in.get(timeout=60)  # the version the parent wrote, after invalidating
        told = time.monotonic()
        seen: dict[str, float] = {}
        stale_after_bound = 0
        first_fresh = tool()[0] == want and docs()[0] == want
        while time.monotonic() - told < 10 and len(seen) < 2:
            for name, fn in (("tool", tool), ("docs", docs)):
                if name in seen:
                    continue
                version, _ = fn()
                elapsed = time.monotonic() - told
                if version == want:
                    seen[name] = elapsed
                elif elapsed > max_staleness:
                    stale_after_bound += 1
            time.sleep(0.002)
        q_out.put(("done", seen.get("tool", -1.0), seen.get("docs", -1.0), stale_after_bound, first_fresh))
    finally:
        store.close()
