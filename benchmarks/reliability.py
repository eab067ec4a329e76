"""``make reliability``: faults, freshness, isolation, injection, secrets, bad input, load, fuzz (issue 9).

``stale_after_invalidate`` (issue 19, items 4 and 5) is in ``reliability_stale.py``.

``python -m benchmarks.reliability --out FILE [--only a,b] [--quick]`` writes ONE JSON
report with a section per item of issue 9; each section has its figures and
``passed`` against the property it states. Everything runs on loopback
(redis-server started here), bounded in time and count; nothing printed or
written holds a secret or prompt text (only kinds, counts, digests and timings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import reliability_corpus as corpus
from benchmarks import reliability_workers as w
from benchmarks.reliability_infra import (
    REDIS_SERVER,
    RedisProc,
    StallProxy,
    files_raw,
    l1_raw,
    needle_forms,
    pct,
    redis_raw,
    remount_ro,
    sqlite_raw,
    tmpfs,
)
from benchmarks.reliability_stale import stale_after_invalidate

ROOT = Path(__file__).resolve().parents[1]
CTX = mp.get_context("spawn")


def _collect(procs: list[Any], q: Any, timeout: float) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    for _ in procs:
        out.append(q.get(timeout=max(1.0, deadline - time.monotonic())))
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    return out


def _r(x: float | None, n: int = 2) -> float | None:
    return None if x is None else round(x, n)


# faults ---------------------------------------------------------------------------------


def _phase_figures(
    results: list[dict[str, Any]], faults: list[tuple[str, float, float]], duration: float
) -> dict[str, Any]:
    events = [e for r in results for e in r["events"]]
    failed = [e for e in events if not e[2]]
    corrupt = [e for e in events if e[5]]
    per_fault: dict[str, Any] = {}
    for name, start, end in faults:
        during = [e for e in events if start <= e[0] < end]
        recov: list[float] = []
        for r in results:
            after = [e[0] for e in r["events"] if e[0] >= end and e[3] in ("l2", "l3")]
            recov.append(after[0] - end if after else float("inf"))
        finite = [x for x in recov if x != float("inf")]
        per_fault[name] = {
            "window_s": [round(start, 2), round(end, 2)],
            "calls": len(during),
            "failed_calls": sum(1 for e in during if not e[2]),
            "p50_ms": _r(pct([e[4] for e in during], 0.5)),
            "p99_ms": _r(pct([e[4] for e in during], 0.99)),
            "max_ms": _r(max((e[4] for e in during), default=None)),
            "served_from": dict(Counter(str(e[3]) for e in during if e[1] in ("tool", "retrieve"))),
            "recovery_s_per_worker": [None if x == float("inf") else round(x, 3) for x in recov],
            "recovered_all_workers": len(finite) == len(recov),
            "recovery_s_max": _r(max(finite)) if finite else None,
        }
    base = [e for e in events if e[0] < faults[0][1]] if faults else events
    return {
        "workers": len(results),
        "duration_s": duration,
        "calls": len(events),
        "failed_calls": len(failed),
        "failed_by_error": dict(Counter(e[6] for e in failed)),
        "corrupted_reads": len(corrupt),
        "baseline_p50_ms": _r(pct([e[4] for e in base], 0.5)),
        "faults": per_fault,
        "counters_sum": _sum_counters([r["counters"] for r in results]),
    }


def _sum_counters(cs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = defaultdict(int)
    for c in cs:
        for k, v in c.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    out[f"{k}.{k2}"] += v2
            else:
                out[k] += v
    return {k: v for k, v in out.items() if v}


def _verify_written(
    location: str, results: list[dict[str, Any]], faults: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Read back, from a fresh process-local L1, every entry the workers stored; checksums must hold."""
    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store

    store = open_store(location)
    cache = PromptCache(store=store)
    read = ToolSpec.model_validate(w.READ)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    in_fault = {
        (op, rid)
        for r in results
        for (t, op, rid) in r["stored"]
        if any(s <= t < e + 1.0 for _, s, e in faults)
    }
    allw = {(op, rid) for r in results for (_, op, rid) in r["stored"]}
    served = corrupt = served_fault = corrupt_fault = 0
    for op, rid in sorted(allw):
        try:
            if op == "tool":
                out = cache.tools.call(read, {"rid": rid}, lambda rid: {"recomputed": True}, tenant="acme")
                hit, ok = out.lookup.hit, w.value_ok(rid, out.value)
            else:
                res = cache.retrieval.retrieve(
                    rid, lambda q: [{"id": q, "text": "x", "metadata": {}}], tenant="acme", retriever=kb
                )
                hit, ok = res.lookup.hit, w.docs_ok(rid, res.value)
        except Exception:
            hit, ok = True, False
        if hit:
            served += 1
            corrupt += not ok
            if (op, rid) in in_fault:
                served_fault += 1
                corrupt_fault += not ok
    store.close(timeout=2)
    return {
        "entries_stored_by_workers": len(allw),
        "stored_during_fault_windows": len(in_fault),
        "read_back_hits": served,
        "read_back_hits_written_in_fault": served_fault,
        "read_back_corrupted": corrupt,
        "read_back_corrupted_written_in_fault": corrupt_fault,
    }


def _run_workers(
    location: str,
    n: int,
    duration: float,
    size: int,
    blob_threshold: int | None,
    controller: Callable[[float], list[tuple[str, float, float]]],
) -> tuple[list[dict[str, Any]], list[tuple[str, float, float]]]:
    q = CTX.Queue()
    t0 = time.time() + 3.0  # spawn + imports
    procs = [
        CTX.Process(target=w.fault_worker, args=(location, i, t0, duration, size, blob_threshold, q))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    while time.time() < t0:
        time.sleep(0.01)
    faults = controller(t0)
    return _collect(procs, q, duration + 60), faults


def faults_redis(tmp: Path, quick: bool) -> dict[str, Any]:
    """Redis killed, DEBUG SLEEP, SIGSTOP/SIGCONT, restarted; L2 network stall through a proxy."""
    server = RedisProc(tmp / "redis-faults")
    proxy = StallProxy(server.port)
    d = 1.5 if quick else 2.0
    gap = 3.0
    duration = 3 + 4 * (d + gap) + 1

    def controller(t0: float) -> list[tuple[str, float, float]]:
        out = []

        def at(t: float) -> None:
            while time.time() - t0 < t:
                time.sleep(0.005)

        t = 3.0
        at(t)
        server.kill()
        at(t + d)
        server.start()
        out.append(("redis_killed_then_restarted", t, time.time() - t0))
        t += d + gap
        at(t)
        server.debug_sleep(d)
        out.append(("redis_debug_sleep", t, t + d))
        t += d + gap
        at(t)
        server.pause()
        at(t + d)
        server.resume()
        out.append(("redis_sigstop_sigcont", t, time.time() - t0))
        t += d + gap
        at(t)
        proxy.stalled.set()
        at(t + d)
        proxy.stalled.clear()
        out.append(("l2_network_stall_proxy", t, time.time() - t0))
        return out

    try:
        results, faults = _run_workers(proxy.url, 3, duration, 400, None, controller)
        figs = _phase_figures(results, faults, duration)
        figs["read_back"] = _verify_written(server.url, results, faults)
    finally:
        proxy.close()
        server.stop()
    figs["note"] = (
        "core calls (tool read/write via cache.tools, cache.retrieval, prepare_request on an "
        "anthropic agent turn) in 3 OS processes; no LangGraph graph in this run"
    )
    figs["passed"] = (
        figs["failed_calls"] == 0
        and figs["corrupted_reads"] == 0
        and figs["read_back"]["read_back_corrupted"] == 0
        and all(f["recovered_all_workers"] for f in figs["faults"].values())
    )
    return figs


def faults_sqlite(tmp: Path, quick: bool) -> dict[str, Any]:
    """SQLite L2 locked (exclusive transaction in another process), truncated, deleted."""
    root = tmp / "sqlite-faults"
    root.mkdir()
    dbfile = root / "promptcache.sqlite3"
    duration = 14.0

    def controller(t0: float) -> list[tuple[str, float, float]]:
        def at(t: float) -> None:
            while time.time() - t0 < t:
                time.sleep(0.005)

        out = []
        at(2.0)
        locker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import sqlite3,sys,time; db=sqlite3.connect(sys.argv[1], isolation_level=None);"
                    "db.execute('BEGIN EXCLUSIVE'); time.sleep(3); db.execute('ROLLBACK')"
                ),
                str(dbfile),
            ]
        )
        locker.wait(10)
        out.append(("sqlite_locked_exclusive_3s", 2.0, time.time() - t0))
        at(7.0)
        size = dbfile.stat().st_size if dbfile.exists() else 0
        with open(dbfile, "r+b") as f:
            f.truncate(size // 3)
        wal = Path(str(dbfile) + "-wal")
        if wal.exists():
            with open(wal, "r+b") as f:
                f.truncate(0)
        out.append(("sqlite_truncated", 7.0, 8.0))
        at(10.0)
        for suffix in ("", "-wal", "-shm"):
            Path(str(dbfile) + suffix).unlink(missing_ok=True)
        out.append(("sqlite_deleted", 10.0, 11.0))
        return out

    results, faults = _run_workers(str(root), 3, duration, 400, None, controller)
    figs = _phase_figures(results, faults, duration)
    figs["read_back"] = _verify_written(str(root), results, faults)
    figs["note"] = (
        "recovery = first L2 hit after the fault window; after truncation/deletion, workers keep "
        "their open connections (to the unlinked or damaged file) until they restart"
    )
    figs["passed"] = (
        figs["failed_calls"] == 0
        and figs["corrupted_reads"] == 0
        and (figs["read_back"]["read_back_corrupted"] == 0)
    )
    return figs


def faults_l3(tmp: Path, quick: bool) -> dict[str, Any]:
    """The blob directory made read-only (bind remount) and full (a 64 KiB tmpfs), in-process."""
    from promptcache import PromptCache
    from promptcache.artifacts import ToolSpec
    from promptcache.tiers.router import TieredStore

    root = tmp / "l3-faults"
    root.mkdir()
    store = TieredStore.default(root, blob_threshold=1024, max_staleness_s=1.0)
    blobs = root / "blobs"
    blobs.mkdir(exist_ok=True)
    cache = PromptCache(store=store)
    read = ToolSpec.model_validate(w.READ)
    rng = random.Random(3)
    phases: dict[str, Any] = {}
    failed = corrupt = 0

    def run_phase(name: str, n: int) -> None:
        nonlocal failed, corrupt
        lat: list[float] = []
        tiers: Counter[str] = Counter()
        before = store.stats()
        for i in range(n):
            rid = f"{name}-{i % 40}"
            t = time.perf_counter()
            try:
                out = cache.tools.call(
                    read, {"rid": rid}, lambda rid: w.make_value(rid, 8192, rng), tenant="acme"
                )
                corrupt += not w.value_ok(rid, out.value)
                tiers[str(out.lookup.tier)] += 1
            except Exception:
                failed += 1
            lat.append((time.perf_counter() - t) * 1e3)
            if i % 40 == 39:
                store.flush(5)
                store.l1.clear()  # make the next reads go to L2/L3
        store.flush(5)
        after = store.stats()
        phases[name] = {
            "calls": n,
            "p99_ms": _r(pct(lat, 0.99)),
            "served_from": dict(tiers),
            "l3_tier_skipped": after.tiers["l3"].tier_skipped - before.tiers["l3"].tier_skipped,
            "writeback_failed": after.writeback_failed - before.writeback_failed,
        }

    run_phase("baseline", 200)
    ro = remount_ro(blobs, True)
    try:
        run_phase("l3_read_only", 200)
    finally:
        if ro:
            remount_ro(blobs, False)
    time.sleep(store.breaker_cooldown_s + 0.5)  # let the L3 breaker close before measuring recovery
    run_phase("after_read_only", 200)
    with tmpfs(blobs, "64k") as full_ok:
        run_phase("l3_full_tmpfs_64k", 200)
    time.sleep(store.breaker_cooldown_s + 0.5)
    run_phase("after_full", 200)
    store.close()
    return {
        "read_only_via": "bind remount ro" if ro else "FAILED to remount (not root?)",
        "full_via": "tmpfs size=64k" if full_ok else "FAILED to mount tmpfs",
        "phases": phases,
        "failed_calls": failed,
        "corrupted_reads": corrupt,
        "recovered_after_read_only": phases["after_read_only"]["served_from"].get("l3", 0) > 0,
        "recovered_after_full": phases["after_full"]["served_from"].get("l3", 0) > 0,
        "passed": failed == 0 and corrupt == 0 and ro and full_ok,
    }


# freshness ------------------------------------------------------------------------------


def _freshness_run(location: str, tmp: Path, n_ops_total: int, bound_s: float) -> dict[str, Any]:
    truth = str(tmp / f"truth-{abs(hash(location)) % 10_000}.db")
    db = sqlite3.connect(truth, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE rec (rid TEXT PRIMARY KEY, v INTEGER)")
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    n_rids = 25
    db.executemany("INSERT INTO rec VALUES (?, 0)", [(f"R{i}",) for i in range(n_rids)])
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("policy", "p1"), ("index", "1")])
    q = CTX.Queue()
    n_proc = 4
    procs = [
        CTX.Process(target=w.freshness_worker, args=(location, truth, i, n_ops_total // n_proc, n_rids, q))
        for i in range(n_proc)
    ]
    for p in procs:
        p.start()
    # the parent bumps the index version and the policy version while the workers run
    from promptcache.artifacts import open_store

    bumps = 0
    ctl = open_store(location, max_staleness_s=1.0)
    deadline = time.monotonic() + 240
    while any(p.is_alive() for p in procs) and q.qsize() < n_proc and time.monotonic() < deadline:
        time.sleep(0.7)
        bumps += 1
        old = db.execute("SELECT v FROM meta WHERE k='index'").fetchone()[0]
        db.execute("UPDATE meta SET v=? WHERE k='index'", (str(int(old) + 1),))
        with contextlib.suppress(Exception):
            ctl.invalidate(f"index:kb@{old}")
        if bumps % 3 == 0:
            db.execute("UPDATE meta SET v=? WHERE k='policy'", (f"p{bumps}",))
    ctl.close(timeout=1)
    res = _collect(procs, q, 240)
    logs = [e for r in res for e in r["log"]]
    writes = sorted((e for e in logs if e[0] == "w"), key=lambda e: e[3])
    by_rid: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for _, rid, v, t, wid in writes:
        by_rid[rid].append((t, v, wid))
    same = cross_within = cross_beyond = 0
    max_lag = 0.0
    policy_viol = index_viol = 0
    tiers: Counter[str] = Counter()
    for e in logs:
        if e[0] == "r":
            _, rid, v, t, wid, tier, pv_served, pv_now = e
            tiers[str(tier)] += 1
            if pv_served != pv_now:
                policy_viol += 1
            newer = [(tw, vw, ww) for tw, vw, ww in by_rid[rid] if tw < t and vw > v]
            if not newer:
                continue
            tw, _vw, ww = min(newer, key=lambda x: x[0])
            lag = t - tw
            if ww == wid:
                same += 1
            elif lag <= bound_s:
                cross_within += 1
                max_lag = max(max_lag, lag)
            else:
                cross_beyond += 1
                max_lag = max(max_lag, lag)
        elif e[0] == "i":
            if e[6] != e[7]:
                policy_viol += 1
            if str(e[2]) != str(e[8]):
                index_viol += 1
    errors = sum(r["errors"] for r in res)
    return {
        "processes": n_proc,
        "operations": len(logs),
        "errors": errors,
        "tool_writes_with_invalidate": len(writes),
        "index_bumps": bumps,
        "policy_version_changes": bumps // 3,
        "reads_served_from": dict(tiers),
        "stale_reads_same_process_after_invalidate": same,
        "stale_reads_other_process_within_bound": cross_within,
        "stale_reads_other_process_beyond_bound": cross_beyond,
        "max_cross_process_staleness_s": round(max_lag, 3),
        "stated_bound_s": bound_s,
        "reads_served_under_other_policy_version": policy_viol,
        "retrievals_served_other_index_version": index_viol,
        "passed": same == 0 and cross_beyond == 0 and policy_viol == 0 and index_viol == 0 and errors == 0,
    }


def freshness(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """Tool writes, index bumps and policy changes across 4 processes; SQLite and Redis."""
    n = 2_000 if quick else 10_000
    out: dict[str, Any] = {"sqlite": _freshness_run(str(tmp / "fresh-sqlite"), tmp, n, 1.0)}
    if redis_url:
        out["redis"] = _freshness_run(redis_url, tmp, n, 1.0)
    out["passed"] = all(v["passed"] for v in out.values() if isinstance(v, dict))
    return out


# tenant isolation ------------------------------------------------------------------------


def isolation(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """Randomized (tenant, scope, content, entry type) operations; zero cross-tenant reads."""
    from promptcache_langchain import tenant_from_config
    from promptcache_langgraph import tenant_cache_key

    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec, open_store
    from promptcache.policy import Policy

    n_total = 20_000 if quick else 100_000
    backends = [("sqlite", str(tmp / "iso-sqlite"))] + ([("redis", redis_url)] if redis_url else [])
    read = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    lg_key = tenant_cache_key()
    tenants = [f"t{i}" for i in range(8)]
    scopes = ["tenant", "user:alice", "user:bob", "public"]
    figs: dict[str, Any] = {}
    rng = random.Random(42)
    prompt_keys: dict[str, str] = {}
    lg_keys: dict[Any, str] = {}
    key_collisions = 0
    for bname, loc in backends:
        store = open_store(loc)
        pub = PromptCache(Policy(version="iso", allow_public=True), store=store)
        priv = PromptCache(Policy(version="iso", allow_public=False), store=store)
        c: Counter[str] = Counter()
        n = n_total // len(backends)
        for _ in range(n):
            tenant, scope, cid = rng.choice(tenants), rng.choice(scopes), rng.randrange(40)
            is_pub = rng.random() < 0.5
            cache = pub if is_pub else priv
            kind = rng.choices(
                ["tool", "retrieval", "response", "prompt", "langchain", "langgraph"], [4, 3, 1, 1, 0.5, 0.5]
            )[0]
            stamp = {"owner": tenant, "scope": scope, "cid": cid}
            c["ops"] += 1
            c[f"ops.{kind}"] += 1
            if kind in ("tool", "langchain"):
                t = tenant
                if kind == "langchain":  # tenant resolved the way the LangChain integration does
                    t = tenant_from_config({"configurable": {"tenant_id": tenant}}) or "?"
                out = cache.tools.call(
                    read, {"cid": cid}, lambda cid, s=stamp: dict(s), tenant=t, scope=scope
                )
                got, hit = out.value, out.lookup.hit
            elif kind == "retrieval":
                res = cache.retrieval.retrieve(
                    f"q{cid}",
                    lambda q, s=stamp: [{"id": "d", "text": "x", "metadata": dict(s)}],
                    tenant=tenant,
                    retriever=kb,
                    scope=scope,
                )
                got, hit = res.value[0]["metadata"], res.lookup.hit
            elif kind == "response":
                scope = "tenant"
                stamp["scope"] = scope
                req = {
                    "model": "gpt-4o",
                    "temperature": 0,
                    "messages": [{"role": "user", "content": f"q{cid}"}],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "a", "schema": {"type": "object"}},
                    },
                }
                r = cache.responses.call(req, lambda _r, s=stamp: dict(s), tenant=tenant)
                got, hit = r.value, r.lookup.hit
            elif kind == "prompt":
                body = corpus.agent_body("openai-chat", f"tool {cid}", f"doc {cid}")
                p = cache.prepare_request(body, format="openai-chat", tenant=tenant)
                for k in (p.plan.prefix_key, p.plan.conversation_key, p.body.get("prompt_cache_key")):
                    if k is None:
                        continue
                    if prompt_keys.setdefault(k, tenant) != tenant:
                        key_collisions += 1
                continue
            else:
                k = lg_key({"tenant_id": tenant, "messages": [f"m{cid}"]})
                if lg_keys.setdefault(k, tenant) != tenant:
                    key_collisions += 1
                continue
            if not hit:
                continue
            c["hits"] += 1
            if got.get("cid") != cid:
                c["wrong_content"] += 1
            if scope == "public":
                if not is_pub:
                    c["public_hit_without_allow_public"] += 1
                elif got.get("scope") != "public":
                    c["public_hit_from_private_entry"] += 1
                else:
                    c["public_shared_hits"] += 1 if got.get("owner") != tenant else 0
            else:
                if got.get("owner") != tenant:
                    c["cross_tenant_reads"] += 1
                if got.get("scope") != scope:
                    c["cross_scope_reads"] += 1
        store.flush(10)
        st = store.stats()
        c["router_tenant_mismatch_refusals"] = st.tenant_mismatch
        c["refused_public_scope_unkeyable"] = priv.tools.stats().unkeyable + priv.retrieval.stats().unkeyable
        store.close()
        figs[bname] = dict(c)
    bad = sum(
        v.get(k, 0)
        for v in figs.values()
        for k in (
            "cross_tenant_reads",
            "cross_scope_reads",
            "public_hit_without_allow_public",
            "public_hit_from_private_entry",
            "wrong_content",
        )
    )
    figs["prompt_and_langgraph_key_collisions_across_tenants"] = key_collisions
    figs["distinct_prompt_keys"] = len(prompt_keys)
    figs["passed"] = bad == 0 and key_collisions == 0
    return figs


# prompt injection -------------------------------------------------------------------------


def injection(quick: bool) -> dict[str, Any]:
    """Instruction-like tool/retrieved content, cached and served again, never lands in a trusted part."""
    from promptcache import PromptCache
    from promptcache.artifacts import RetrieverSpec, ToolSpec
    from promptcache.blocks import Block, Trust
    from promptcache.tiers.router import TieredStore

    cache = PromptCache(store=TieredStore())
    read = ToolSpec(name="get_reservation", side_effect="read_only", ttl=3600)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    trusted_sections = {"static", "session"}
    c: Counter[str] = Counter()
    for i, text in enumerate(corpus.injection_texts("ZZINJ")):
        for rnd in range(2):  # the second round is served from cache
            tool = cache.tools.call(read, {"i": i}, lambda i, text=text: {"result": text}, tenant="acme")
            docs = cache.retrieval.retrieve(
                f"q{i}", lambda q, text=text: [{"id": "d", "text": text}], tenant="acme", retriever=kb
            )
            c["served_from_cache"] += int(tool.lookup.hit) + int(docs.lookup.hit)
            c["served_labelled_untrusted"] += int(tool.trust == "untrusted") + int(docs.trust == "untrusted")
            for fmt in corpus.FORMATS:
                body = corpus.agent_body(fmt, tool.value["result"], docs.value[0]["text"], user=f"turn {rnd}")
                p = cache.prepare_request(body, format=fmt, tenant="acme")
                c["bodies"] += 1
                if "ZZINJ" in json.dumps(corpus.trusted_parts(fmt, p.body)):
                    c[f"in_trusted_part.{fmt}"] += 1
                if json.dumps(p.body).count("ZZINJ") < 4:
                    c[f"content_lost.{fmt}"] += 1
                for b, sec in zip(p.plan.blocks, p.plan.sections, strict=True):
                    if "ZZINJ" in json.dumps(b.content) and (
                        sec in trusted_sections
                        or b.kind.value in ("system", "developer", "tool_schema", "context")
                    ):
                        c[f"in_trusted_block.{fmt}"] += 1
            plan = cache.plan(
                [
                    Block(kind="system", content=corpus.SYSTEM_PROMPT),
                    Block(kind="retrieval", content=docs.value[0]["text"], stability="static"),
                    Block(kind="retrieval", content=docs.value[0]["text"]),
                    Block(kind="tool_result", content=tool.value),
                    Block(kind="user", content="hi"),
                ],
                model="gpt-4o",
                tenant="acme",
            )
            c["plans"] += 1
            for b, sec in zip(plan.blocks, plan.sections, strict=True):
                if "ZZINJ" in json.dumps(b.content) and (sec in trusted_sections or b.trust is Trust.TRUSTED):
                    c["plan_untrusted_in_trusted"] += 1
    bad = sum(v for k, v in c.items() if k.startswith(("in_trusted", "content_lost", "plan_untrusted")))
    return {
        **dict(c),
        "formats": list(corpus.FORMATS),
        "injection_texts": len(corpus.INJECTIONS),
        "note": "a document the application pastes into the user turn stays in the user turn (not system)",
        "passed": bad == 0 and c["served_from_cache"] > 0,
    }


# secrets -------------------------------------------------------------------------------------


EMBEDDINGS = (
    "tool_output",
    "tool_args_hashed",
    "tool_args_in_tag",
    "document_text",
    "document_metadata",
    "response_output",
    "prompt_request",
    "prepare_request_prompt",
)


def _embed(cache: Any, name: str, s: corpus.Secret, i: int) -> Counter[str]:
    from promptcache.artifacts import RetrieverSpec, ToolSpec

    c: Counter[str] = Counter()
    read = ToolSpec(name="lookup", side_effect="read_only", ttl=3600)
    tagged = ToolSpec(name="account", side_effect="read_only", ttl=3600, tags=["acct:{key}"])
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    cases: dict[str, tuple[Callable[[], Any], Any]] = {
        "tool_output": (
            lambda: (
                cache.tools.call(
                    read, {"i": i}, lambda i: {"out": f"config:\n{s.text}\n"}, tenant="acme"
                ).value
            ),
            {"out": f"config:\n{s.text}\n"},
        ),
        "tool_args_hashed": (
            lambda: cache.tools.call(read, {"q": s.text}, lambda q: {"ok": i}, tenant="acme").value,
            {"ok": i},
        ),
        "tool_args_in_tag": (
            lambda: cache.tools.call(tagged, {"key": s.text}, lambda key: {"ok": i}, tenant="acme").value,
            {"ok": i},
        ),
        "document_text": (
            lambda: cache.retrieval.retrieve(
                f"q{i}", lambda q: [{"id": "d", "text": f"See {s.text} here"}], tenant="acme", retriever=kb
            ).value[0]["text"],
            f"See {s.text} here",
        ),
        "document_metadata": (
            lambda: cache.retrieval.retrieve(
                f"m{i}",
                lambda q: [{"id": "d", "text": "x", "metadata": {"k": s.text}}],
                tenant="acme",
                retriever=kb,
            ).value[0]["metadata"],
            {"k": s.text},
        ),
        "response_output": (
            lambda: (
                cache.responses.call(
                    {
                        "model": "gpt-4o",
                        "temperature": 0,
                        "messages": [{"role": "user", "content": f"r{i}"}],
                        "response_format": rf,
                    },
                    lambda r: {"answer": s.text},
                    tenant="acme",
                ).value
            ),
            {"answer": s.text},
        ),
        "prompt_request": (
            lambda: (
                cache.responses.call(
                    {
                        "model": "gpt-4o",
                        "temperature": 0,
                        "messages": [
                            {"role": "system", "content": s.text},
                            {"role": "user", "content": f"p{i}"},
                        ],
                        "response_format": rf,
                    },
                    lambda r: {"answer": "ok"},
                    tenant="acme",
                ).value
            ),
            {"answer": "ok"},
        ),
        "prepare_request_prompt": (
            lambda: (
                cache.prepare_request(
                    corpus.agent_body("anthropic-messages", s.text, s.text),
                    format="anthropic-messages",
                    tenant="acme",
                ),
                None,
            )[1],
            None,
        ),
    }
    fn, expect = cases[name]
    for _ in range(2):
        try:
            if fn() != expect:
                c[f"value_lost.{name}"] += 1
        except Exception:
            c[f"call_failed.{name}"] += 1
    return c


def secrets(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """Secrets in prompts, tool outputs/arguments and documents: none in any tier's raw bytes."""
    import redis as redis_mod

    from promptcache import PromptCache
    from promptcache.artifacts import open_store
    from promptcache.detect import SECRET, scan_sensitive

    items = corpus.secrets_corpus()
    failures: Counter[str] = Counter()
    leaks: dict[str, dict[str, int]] = {}
    leak_tiers: Counter[str] = Counter()
    scanned: Counter[str] = Counter()
    for emb in EMBEDDINGS:
        d = tmp / f"secrets-{emb}"
        stores = [open_store(str(d), blob_threshold=512)]
        if redis_url:
            stores.append(open_store(redis_url, namespace=f"sec-{emb}"))
        for st in stores:
            cache = PromptCache(store=st)
            for i, s in enumerate(items):
                failures.update(_embed(cache, emb, s, i))
            st.flush(10)
        raw: dict[str, list[bytes]] = {"l1": [b for st in stores for b in l1_raw(st)]}
        raw["sqlite"] = sqlite_raw(d / "promptcache.sqlite3")
        raw["blobs"] = files_raw(d / "blobs")
        if redis_url:
            raw["redis"] = redis_raw(redis_mod.Redis.from_url(redis_url), match=f"sec-{emb}*")
        for k, v in raw.items():
            scanned[k] += len(v)
        for s in items:
            forms = needle_forms(s.needle)
            hit_tiers = [t for t, blobs in raw.items() if any(f in b for b in blobs for f in forms)]
            if hit_tiers:
                key = f"{emb}:{'listed' if s.listed else 'extra'}"
                leaks.setdefault(key, {})
                leaks[key][s.kind] = leaks[key].get(s.kind, 0) + 1
                leak_tiers.update(hit_tiers)
        for st in stores:
            st.close()
    recall: Counter[str] = Counter()
    for s in items:
        if not any(f.data_class == SECRET for f in scan_sensitive(s.text)):
            recall["missed." + s.kind] += 1
    fp = false_positives(quick)
    listed_leaks = {k: v for k, v in leaks.items() if k.endswith(":listed")}
    return {
        "secrets": len(items),
        "secret_kinds": len({s.kind for s in items}),
        "embeddings": list(EMBEDDINGS),
        "raw_items_scanned_by_tier": dict(scanned),
        "leaks_by_embedding": {k: sum(v.values()) for k, v in leaks.items()},
        "leaked_kinds_by_embedding": leaks,
        "leaks_by_tier": dict(leak_tiers),
        "detector_missed": dict(recall),
        "calls_failed_or_value_lost": dict(failures),
        "false_positives": fp,
        "passed": not listed_leaks and not failures,
    }


def false_positives(quick: bool) -> dict[str, Any]:
    """Secret/PII findings on ordinary technical text (repo docs, stdlib docstrings, bundled fixtures)."""
    from promptcache.detect import SECRET, scan_sensitive
    from promptcache.lab.bundled import REAL

    sources = {
        "repo_docs": corpus.file_texts([ROOT / "docs", ROOT / "README.md"], (".md",)),
        "stdlib_docstrings": corpus.stdlib_docstrings(1_000_000 if quick else 3_000_000),
        "bundled_fixtures": corpus.file_texts([REAL]),
    }
    out: dict[str, Any] = {}
    for name, texts in sources.items():
        n = chars = secret_paras = pii_paras = 0
        kinds: Counter[str] = Counter()
        for para in corpus.paragraphs(texts):
            n += 1
            chars += len(para)
            found = scan_sensitive(para)
            if any(f.data_class == SECRET for f in found):
                secret_paras += 1
            if any(f.data_class != SECRET for f in found):
                pii_paras += 1
            kinds.update(f.kind for f in found)
        out[name] = {
            "paragraphs": n,
            "chars": chars,
            "secret_flagged_paragraphs": secret_paras,
            "secret_fp_rate": round(secret_paras / n, 5) if n else None,
            "pii_flagged_paragraphs": pii_paras,
            "pii_flag_rate": round(pii_paras / n, 5) if n else None,
            "findings_by_kind": dict(kinds.most_common(8)),
        }
    return out


def secret_detection(quick: bool) -> dict[str, Any]:
    """Recall by kind on the generated corpus, false positives on real text, scan cost (issue 19)."""
    from benchmarks.reliability_secrets import secret_detection as run

    return run(quick)


# bad input -----------------------------------------------------------------------------------


def bad_input(tmp: Path, quick: bool) -> dict[str, Any]:
    """Every case ends in a clear error naming the field, or a counted miss; never a crash or data loss."""
    from benchmarks.reliability_badinput import run_cases

    cases = run_cases(tmp / "bad-input")
    bad = [c for c in cases if not c["ok"]]
    return {
        "cases": len(cases),
        "by_outcome": dict(Counter(c["outcome"] for c in cases)),
        "failed": [{k: c[k] for k in ("name", "outcome", "detail")} for c in bad],
        "all": {c["name"]: c["outcome"] for c in cases},
        "passed": not bad,
    }


# tags ----------------------------------------------------------------------------------------


def tags(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """Tag values never in clear, no orphans after purge, no cross-tenant invalidation, bounded memory."""
    from benchmarks.reliability_tags import tags as run

    return run(tmp, quick, redis_url)


# unusable cache locations --------------------------------------------------------------------


def locations(tmp: Path, quick: bool) -> dict[str, Any]:
    """Unusable cache locations (issue 19, item 6): every call succeeds, skips are counted, one warning."""
    from benchmarks.reliability_locations import run_cases

    cases = run_cases(tmp / "locations")
    ran = [c for c in cases if c["ok"] is not None]
    bad = [c for c in ran if not c["ok"]]
    return {
        "cases": len(cases),
        "ran": len(ran),
        "degraded": sum(bool(c["ok"]) for c in ran),
        "calls_raised": sum(c.get("raised") is not None for c in ran),
        "wrong_or_stale_values": sum(
            c.get("wrong_values", 0) + c.get("retrieval_wrong", 0) + c.get("stale_after_write", 0)
            for c in ran
        ),
        "tier_skipped_counted": sum(bool(c.get("tier_skipped")) for c in ran),
        "unavailable": [f"{c['name']}/{c['via']}" for c in cases if c["ok"] is None],
        "all": {f"{c['name']}/{c['via']}": c["outcome"] for c in cases},
        "failed": [{k: c.get(k) for k in ("name", "via", "outcome")} for c in bad],
        "passed": bool(ran) and not bad,
    }


# linear time, bounded memory -------------------------------------------------------------------


def linear(tmp: Path, quick: bool) -> dict[str, Any]:
    """Issue 19, item 7: the 1 MB / 25k-timestamp prompt against json.dumps, and memory at 100k tenants."""
    from benchmarks.reliability_linear import bounded_memory, linear_time

    time_ = linear_time(quick)
    memory = bounded_memory(quick)
    return {
        "ratio_1mb": time_["ratio_1mb"],
        "max_ratio": time_["max_ratio"],
        "mb_at_tenants": {memory["tenants"]: memory["mb_held"]},
        "time": time_,
        "memory": memory,
        "passed": bool(time_["passed"] and memory["passed"]),
    }


# load ----------------------------------------------------------------------------------------


def load(tmp: Path, quick: bool) -> dict[str, Any]:
    """Several processes on one Redis: lookups/s, p50/p99 vs bare round trip; thundering herd."""
    import redis as redis_mod

    from promptcache.tiers.router import TieredStore

    server = RedisProc(tmp / "redis-load")
    try:
        n_keys = 2000
        st = TieredStore.from_redis(server.url)
        for i in range(n_keys):
            st.put(f"load:{i}", b"v" * 512, tenant="acme", entry_type="tool_output", ttl_s=600)
        st.flush(30)
        st.close()
        r = redis_mod.Redis.from_url(server.url)
        r.mset({f"x{i}": b"" for i in range(1)})
        pipe = r.pipeline()
        for i in range(n_keys):
            pipe.set(f"bare:{i}", b"v" * 512)
        pipe.execute()
        n_proc, dur = 3, (3.0 if quick else 6.0)
        q = CTX.Queue()
        procs = [
            CTX.Process(target=w.load_worker, args=(server.url, i, dur, n_keys, q)) for i in range(n_proc)
        ]
        for p in procs:
            p.start()
        res = _collect(procs, q, dur * 2 + 60)
        lat = [x for r_ in res for x in r_["lat"]]
        l1 = [x for r_ in res for x in r_["l1_lat"]]
        bare = [x for r_ in res for x in r_["bare"]]
        # thundering herd: 3 processes x 16 threads ask for one missing key at the same instant
        herd: dict[str, Any] = {}
        for rnd in range(2):
            q2 = CTX.Queue()
            go = time.time() + 3.0
            hp = [
                CTX.Process(target=w.herd_worker, args=(server.url, i, f"herd:{rnd}", 16, go, 0.2, q2))
                for i in range(3)
            ]
            for p in hp:
                p.start()
            hr = _collect(hp, q2, 60)
            callers = sum(x["callers"] for x in hr)
            computed = sum(x["computed"] for x in hr)
            herd[f"round{rnd}"] = {
                "callers": callers,
                "computations": computed,
                "served_from": dict(Counter(str(t) for x in hr for t in x["tiers"])),
                "effectiveness": round(1 - computed / callers, 3),
            }
        bench = subprocess.run(
            ["redis-benchmark", "-p", str(server.port), "-t", "get", "-n", "20000", "-c", "3", "--csv"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    total = len(lat)
    best = max(h["effectiveness"] for h in herd.values())
    return {
        "processes": n_proc,
        "duration_s_per_process": dur,
        "router_l2_lookups": total,
        "router_l2_lookups_per_s": round(total / dur),
        "router_l2_p50_ms": _r(pct(lat, 0.5), 3),
        "router_l2_p99_ms": _r(pct(lat, 0.99), 3),
        "router_l2_hit_rate": round(sum(x["hits"] for x in res) / max(1, total), 4),
        "router_l1_p50_ms": _r(pct(l1, 0.5), 4),
        "router_l1_p99_ms": _r(pct(l1, 0.99), 4),
        "router_l1_lookups_per_s": round(len(l1) / (dur / 3)),
        "bare_redis_py_get_p50_ms": _r(pct(bare, 0.5), 3),
        "bare_redis_py_get_p99_ms": _r(pct(bare, 0.99), 3),
        "bare_redis_py_round_trips_per_s": round(len(bare) / (dur / 2)),
        "redis_benchmark_get_csv": bench.stdout.strip().splitlines()[-1]
        if bench.stdout.strip()
        else bench.stderr[-200:],
        "thundering_herd": herd,
        "note": "router L2 path: L1 emptied before every lookup (one GET + decode + integrity "
        "check); single-flight is per process, so a 3-process herd computes once per process at best",
        "passed": total > 0 and sum(x["hits"] for x in res) == total and best >= 1 - 3 / 48,
    }


# fuzzing -------------------------------------------------------------------------------------


def fuzz(quick: bool) -> dict[str, Any]:
    """Hypothesis over the canonicalizer, wire adapters, prepare_request and usage parsers; atheris."""
    from benchmarks.reliability_fuzz import run_atheris, run_hypothesis

    hyp = run_hypothesis(examples=150 if quick else 600)
    ath = run_atheris(runs=3000 if quick else 20000)
    return {
        "hypothesis": hyp,
        "atheris": ath,
        "passed": all(v["escaped"] == 0 and v.get("not_idempotent", 0) == 0 for v in hyp.values())
        and ath.get("crashes", 0) == 0,
    }


# main ----------------------------------------------------------------------------------------

SECTIONS = [
    "faults",
    "freshness",
    "stale_after_invalidate",
    "isolation",
    "injection",
    "secrets",
    "secret_detection",
    "bad_input",
    "tags",
    "locations",
    "linear",
    "load",
    "fuzz",
]


def main() -> int:
    """Run the sections; write the JSON report to ``--out`` and print a summary line per section."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reliability-results.json")
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="smaller counts (development)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "sections": {},
    }
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pc-reliability-") as d:
        tmp = Path(d)
        shared: RedisProc | None = None
        if REDIS_SERVER and any(
            s in only for s in ("freshness", "stale_after_invalidate", "isolation", "secrets", "tags")
        ):
            shared = RedisProc(tmp / "redis-shared")
        url = shared.url if shared else None
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "faults": lambda: _faults(tmp, args.quick),
            "freshness": lambda: freshness(tmp, args.quick, url),
            "stale_after_invalidate": lambda: stale_after_invalidate(tmp, args.quick, url),
            "isolation": lambda: isolation(tmp, args.quick, url),
            "injection": lambda: injection(args.quick),
            "secrets": lambda: secrets(tmp, args.quick, url),
            "secret_detection": lambda: secret_detection(args.quick),
            "bad_input": lambda: bad_input(tmp, args.quick),
            "tags": lambda: tags(tmp, args.quick, url),
            "locations": lambda: locations(tmp, args.quick),
            "linear": lambda: linear(tmp, args.quick),
            "load": lambda: load(tmp, args.quick),
            "fuzz": lambda: fuzz(args.quick),
        }
        try:
            for name in only:
                t = time.monotonic()
                try:
                    res = runners[name]()
                except Exception:
                    res = {"passed": False, "error": traceback.format_exc(limit=4)}
                res["seconds"] = round(time.monotonic() - t, 1)
                report["sections"][name] = res
                print(
                    f"{name:10s} passed={res.get('passed')} ({res['seconds']}s)", file=sys.stderr, flush=True
                )
        finally:
            if shared:
                shared.stop()
    report["seconds"] = round(time.monotonic() - t_all, 1)
    report["passed"] = all(s.get("passed") for s in report["sections"].values())
    text = json.dumps(report, indent=2, default=str)
    Path(args.out).write_text(text + "\n")
    print(json.dumps({k: v.get("passed") for k, v in report["sections"].items()}))
    return 0 if report["passed"] else 1


def _faults(tmp: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if REDIS_SERVER:
        out["redis"] = faults_redis(tmp, quick)
    else:
        out["redis"] = {"passed": False, "error": "redis-server not installed"}
    if REDIS_SERVER:
        from benchmarks.reliability_langgraph import faults_redis_langgraph

        try:
            out["redis_langgraph"] = faults_redis_langgraph(tmp, quick)
        except Exception:
            out["redis_langgraph"] = {"passed": False, "error": traceback.format_exc(limit=4)}
    else:
        out["redis_langgraph"] = {"passed": False, "error": "redis-server not installed"}
    out["sqlite"] = faults_sqlite(tmp, quick)
    out["l3"] = faults_l3(tmp, quick)
    out["passed"] = all(v.get("passed") for v in out.values())
    return out


if __name__ == "__main__":
    shutil.os.environ.setdefault("PYTHONHASHSEED", "0")
    threading.excepthook = lambda a: None  # a dying proxy thread must not spray tracebacks
    raise SystemExit(main())
