"""Unusable cache locations for the reliability report and tests: every call must still succeed.

Issue 19, item 6: a read-only mount, a file where the directory should be, a parent that is a
file, ``/proc``. Each location is given the three ways a user gives one: ``PromptCache(store=...)``,
``$PROMPTCACHE_CACHE_DIR`` and the LangChain retriever over such a cache. :func:`exercise` runs
cached calls through it (tool reads sync and async, a value large enough for L3, a retrieval, a
write that invalidates) and reports what a user would see: whether any call raised, whether a
value came back wrong or stale, whether ``tier_skipped`` counted the skips, and how many
warnings were logged.

A read-only mount is real: a tmpfs mounted read-only in a private mount namespace
(``unshare --map-root-user --mount``, so no privilege is needed where user namespaces are
enabled), and the case runs in that namespace as a subprocess (``python -m
benchmarks.reliability_locations --exercise ...``). Where the kernel refuses a namespace, the case
says ``unavailable`` instead of passing. ``chmod`` cannot make a directory read-only for root,
so it is not used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

Case = dict[str, Any]

#: Calls of each kind per case: enough to show one warning is not one warning per call.
CALLS = 6

#: How a location reaches promptcache.
VIAS = ("store", "env", "langchain_retriever")


class _Records(logging.Handler):
    """Collects promptcache's warning records (their level and logger, never their text)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _cache(location: str, via: str) -> Any:
    from promptcache import PromptCache
    from promptcache.artifacts import open_store

    if via == "env":
        os.environ["PROMPTCACHE_CACHE_DIR"] = location
        return PromptCache()
    if via == "store_nocooldown":
        # every call probes the tier again: one warning must still be one
        return PromptCache(store=open_store(location, breaker_cooldown_s=0.0))
    return PromptCache(store=location)


def _tools(cache: Any) -> dict[str, Any]:
    from promptcache.artifacts import ToolSpec

    read = ToolSpec(name="get_reservation", side_effect="read_only", tags=["reservation:{rid}"])
    write = ToolSpec(
        name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{rid}"]
    )
    version = {"A": 1}
    ran = {"get": 0, "update": 0}

    def get(rid: str) -> dict[str, Any]:
        ran["get"] += 1
        return {"rid": rid, "version": version[rid], "blob": "x" * 300_000 if rid == "BIG" else ""}

    def update(rid: str) -> str:
        ran["update"] += 1
        version[rid] += 1
        return "ok"

    version["BIG"] = 1
    wrong = stale = 0
    for _ in range(CALLS):
        r = cache.tools.call(read, {"rid": "A"}, get, tenant="acme")
        wrong += r.value["version"] != version["A"]
        big = cache.tools.call(read, {"rid": "BIG"}, get, tenant="acme")
        wrong += len(big.value["blob"]) != 300_000

    async def aget(rid: str) -> dict[str, Any]:
        return get(rid)

    async def areads() -> int:
        bad = 0
        for _ in range(CALLS):
            r = await cache.tools.acall(read, {"rid": "A"}, aget, tenant="acme")
            bad += r.value["version"] != version["A"]
        return bad

    wrong += asyncio.run(areads())
    # a write's invalidation cannot reach the unusable tier: this process must still not serve
    # the value it made stale
    cache.tools.call(write, {"rid": "A"}, update, tenant="acme")
    after = cache.tools.call(read, {"rid": "A"}, get, tenant="acme")
    stale += after.value["version"] != version["A"]
    return {"wrong_values": wrong, "stale_after_write": stale, "tool_runs": ran["get"], "writes": 1}


def _retrieval(cache: Any) -> dict[str, Any]:
    from promptcache.artifacts import RetrieverSpec

    spec = RetrieverSpec(name="kb", index_version="v1")
    runs = 0

    def search(q: str) -> list[dict[str, Any]]:
        nonlocal runs
        runs += 1
        return [{"id": "bags", "text": "One free bag in economy.", "metadata": {"page": 3}}]

    wrong = 0
    for _ in range(CALLS):
        docs = cache.retrieval.retrieve("free bags?", search, tenant="acme", retriever=spec).value
        wrong += [d["id"] for d in docs] != ["bags"]
    return {"wrong_values": wrong, "searches": runs}


def _langchain_retriever(cache: Any) -> dict[str, Any]:
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore
    from promptcache_langchain import CachingRetriever

    docs = [Document(id="bags", page_content="One free bag in economy.", metadata={"page": 3})]
    # langchain_core's own in-memory vector store, with its deterministic local embedding
    store = InMemoryVectorStore.from_documents(docs, DeterministicFakeEmbedding(size=16))
    retriever = CachingRetriever(store.as_retriever(search_kwargs={"k": 1}), cache, index_version="kb-1")
    cfg: Any = {"configurable": {"tenant_id": "acme"}}
    wrong = 0
    for _ in range(CALLS):
        wrong += [d.id for d in retriever.invoke("free bags?", cfg)] != ["bags"]

    async def ainvoke() -> int:
        bad = 0
        for _ in range(CALLS):
            bad += [d.id for d in await retriever.ainvoke("free bags?", cfg)] != ["bags"]
        return bad

    wrong += asyncio.run(ainvoke())
    return {"wrong_values": wrong}


def exercise(location: str, via: str) -> dict[str, Any]:
    """Cached calls over a cache at ``location`` given ``via`` one of :data:`VIAS`; what the user saw."""
    handler = _Records()
    logger = logging.getLogger("promptcache")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    out: dict[str, Any] = {"raised": None}
    try:
        cache = _cache(location, via)
        try:
            if via == "langchain_retriever":
                out.update(_langchain_retriever(cache))
            else:
                out.update(_tools(cache))
                out["retrieval_wrong"] = _retrieval(cache)["wrong_values"]
            cache.store.flush(5.0)
            tiers = cache.store.stats().tiers
            out["tier_skipped"] = tiers["l2"].tier_skipped + tiers["l3"].tier_skipped
        finally:
            cache.close()
    except Exception as exc:
        out["raised"] = f"{type(exc).__name__}: {exc}"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    # The one warning of the outage comes from the tiers; a write whose invalidation could not be
    # recorded says so itself (other processes may still serve what it meant to drop).
    out["tier_warnings"] = sum(r.name == "promptcache.tiers" for r in handler.records)
    out["other_warnings"] = len(handler.records) - out["tier_warnings"]
    return out


def _judge(name: str, via: str, res: dict[str, Any]) -> Case:
    wrong = res.get("wrong_values", 0) + res.get("retrieval_wrong", 0)
    problems = []
    if res["raised"]:
        problems.append(f"raised {res['raised']}")
    if wrong:
        problems.append(f"{wrong} wrong values")
    if res.get("stale_after_write"):
        problems.append("stale value after a write")
    if not res.get("tier_skipped"):
        problems.append("tier_skipped not counted")
    if res["tier_warnings"] != 1:
        problems.append(f"{res['tier_warnings']} tier warnings (want 1)")
    if res.get("other_warnings", 0) != res.get("writes", 0):
        problems.append(f"{res['other_warnings']} other warnings for {res.get('writes', 0)} writes")
    return {
        "name": name,
        "via": via,
        "ok": not problems,
        "outcome": "degraded" if not problems else "; ".join(problems),
        **res,
    }


def in_read_only_mount(via: str, existing_cache: bool) -> dict[str, Any] | None:
    """Run :func:`exercise` in a private mount namespace on a read-only tmpfs; None if unavailable."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return None
    root = f"/tmp/pc-ro-{uuid.uuid4().hex[:8]}"
    os.makedirs(root, exist_ok=True)
    py = shlex.quote(sys.executable)
    seed = f"{py} -m benchmarks.reliability_locations --seed {root}/cache && " if existing_cache else ""
    script = (
        f"mount -t tmpfs tmpfs {root} && mkdir -p {root}/cache && {seed}"
        f"mount -o remount,ro {root} && "
        f"{py} -m benchmarks.reliability_locations --exercise {root}/cache --via {via}"
    )
    try:
        proc = subprocess.run(
            [unshare, "--map-root-user", "--mount", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        if "mount" in proc.stderr or "unshare" in proc.stderr:
            return None
        return {"raised": f"subprocess failed: {proc.stderr.strip()[-300:]}", "tier_warnings": 0}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _seed(location: str) -> None:
    """Write one entry into a cache at ``location`` (the read-only case with an existing cache)."""
    from promptcache import PromptCache
    from promptcache.artifacts import ToolSpec

    cache = PromptCache(store=location)
    cache.tools.call(ToolSpec(name="seed", side_effect="pure"), {"x": 1}, lambda x: x, tenant="acme")
    cache.store.flush(5.0)
    cache.close()


def run_cases(root: Path, *, read_only_mounts: bool = True) -> list[Case]:
    """Every unusable location, given every way; each must degrade with one warning.

    ``read_only_mounts=False`` leaves out the cases run in a mount namespace (a subprocess each).
    """
    root.mkdir(parents=True, exist_ok=True)
    in_the_way = root / "a-file"
    in_the_way.write_text("not a directory\n")
    locations = {
        "file_where_the_directory_should_be": str(in_the_way),
        "parent_is_a_file": str(in_the_way / "cache"),
        "proc": f"/proc/promptcache-{uuid.uuid4().hex[:8]}",
        "proc_self": "/proc/self/promptcache",
    }
    saved = os.environ.get("PROMPTCACHE_CACHE_DIR")
    cases: list[Case] = []
    try:
        for name, location in locations.items():
            for via in VIAS:
                cases.append(_judge(name, via, exercise(location, via)))
        cases.append(
            _judge(
                "file_where_the_directory_should_be",
                "store_nocooldown",
                exercise(str(in_the_way), "store_nocooldown"),
            )
        )
    finally:
        if saved is None:
            os.environ.pop("PROMPTCACHE_CACHE_DIR", None)
        else:
            os.environ["PROMPTCACHE_CACHE_DIR"] = saved
    for existing in (False, True) if read_only_mounts else ():
        name = "read_only_mount_with_cache" if existing else "read_only_mount_empty"
        for via in VIAS:
            res = in_read_only_mount(via, existing)
            if res is None:
                cases.append(
                    {"name": name, "via": via, "ok": None, "outcome": "unavailable (no mount namespace)"}
                )
            else:
                cases.append(_judge(name, via, res))
    return cases


def main() -> int:
    """Print :func:`exercise`'s result as JSON (``--exercise DIR --via VIA``); ``--seed DIR`` fills one."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--exercise")
    ap.add_argument("--via", default="store", choices=VIAS)
    ap.add_argument("--seed")
    args = ap.parse_args()
    os.environ["PROMPTCACHE_RECORD_STATS"] = "0"
    if args.seed:
        _seed(args.seed)
        return 0
    print(json.dumps(exercise(args.exercise, args.via)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
