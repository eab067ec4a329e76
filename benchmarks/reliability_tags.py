"""The ``tags`` section of ``make reliability`` (issue 19, items 2, 3 and the tag part of 7).

* **PII in the stores**: tool calls whose tags are filled with social security numbers
  and mail addresses (``person:{ssn}``, ``mail:{email}``), reads and writes that invalidate
  them, on a real SQLite file and a real redis-server; then every byte of the stores is
  searched for those values in clear (and for a bare SHA-256 of each tag). Target: 0.
* **Orphans after purge**: on SQLite, tag rows without their entry and generations of tags
  no entry uses, after the entries expired and were purged (past ``tag_retention_s``); on
  Redis, tag sets and generation fields still present after every entry expired (the
  generations with ``tag_retention_s=2``, cleaned up by the next invalidation). Target: 0.
* **Cross-tenant invalidations**: several tenants cache the same tags, each one's writes
  invalidate them; an entry of another tenant that stops being served is one cross-tenant
  invalidation. Target: 0 (and every own entry is dropped: the check can fail).
* **Memory at 100k tags**: tracemalloc growth of a process's tag-generation table after
  100k (and 200k) distinct tags, against its bound.
"""

from __future__ import annotations

import gc
import hashlib
import random
import sqlite3
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

_N_PEOPLE = 300


def _people(seed: int = 19) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    out = []
    for i in range(_N_PEOPLE):
        ssn = f"{rnd.randint(100, 665):03d}-{rnd.randint(10, 99):02d}-{rnd.randint(1000, 9999):04d}"
        out.append((ssn, f"user{i}.{rnd.randint(1000, 9999)}@example.com"))
    return out


def _sqlite_bytes(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [
            repr(r).encode()
            for t in ("pc_entries", "pc_entry_tags", "pc_tag_gens")
            for r in db.execute(f"SELECT * FROM {t}")
        ]
    return b"\n".join(rows) + path.read_bytes()


def _redis_bytes(url: str, ns: str) -> bytes:
    import redis

    c = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for k in c.scan_iter(match=f"{ns}:*", count=1000):
            out.append(k)
            kind = c.type(k)
            if kind == b"string":
                out.append(c.get(k) or b"")
            elif kind == b"set":
                out.extend(c.smembers(k))
            elif kind == b"hash":
                for f, v in c.hgetall(k).items():
                    out += [f, v]
    finally:
        c.close()
    return b"\n".join(out)


def _in_clear(blob: bytes, people: list[tuple[str, str]]) -> int:
    found = 0
    for ssn, mail in people:
        for tag in (f"person:{ssn}", f"mail:{mail}"):
            if hashlib.sha256(tag.encode()).hexdigest()[:32].encode() in blob:
                found += 1
        found += (ssn.encode() in blob) + (mail.encode() in blob)
    return found


def _pii_run(store: Any, people: list[tuple[str, str]]) -> None:
    from promptcache.artifacts import ToolOutputCache, ToolSpec

    tools = ToolOutputCache(store)
    read = ToolSpec(
        name="get_person", side_effect="read_only", tags=["person:{ssn}", "mail:{email}"], ttl=3600
    )
    write = ToolSpec(name="update_person", side_effect="idempotent_write", invalidates=["person:{ssn}"])
    for i, (ssn, mail) in enumerate(people):
        tenant = f"t{i % 3}"
        tools.call(read, {"ssn": ssn, "email": mail}, lambda ssn, email: {"ok": True}, tenant=tenant)
        if i % 2:
            tools.call(write, {"ssn": ssn}, lambda ssn: "ok", tenant=tenant)
        if i % 5 == 0:
            store.invalidate(f"mail:{mail}")  # the operator's form: every tenant
    store.flush(30)


def pii_in_stores(tmp: Path, redis_url: str | None) -> dict[str, Any]:
    """PII tag values found in clear in SQLite and Redis after tool calls and invalidations."""
    from promptcache.artifacts import open_store

    people = _people()
    out: dict[str, Any] = {"tag_values": 2 * len(people)}
    root = tmp / "tags-pii"
    store = open_store(root)
    _pii_run(store, people)
    store.close()
    out["sqlite_in_clear"] = _in_clear(_sqlite_bytes(root / "promptcache.sqlite3"), people)
    if redis_url:
        ns = "pii" + uuid.uuid4().hex[:8]
        store = open_store(redis_url, namespace=ns)
        _pii_run(store, people)
        store.close()
        out["redis_in_clear"] = _in_clear(_redis_bytes(redis_url, ns), people)
    return out


def orphans_after_purge(tmp: Path, redis_url: str | None) -> dict[str, Any]:
    """Tag rows, generations and tag sets left after every entry expired and was purged."""
    from promptcache.invalidation import LocalBus
    from promptcache.tiers import SQLiteStore, TieredStore

    class Clock:
        now = time.time()

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    path = tmp / "tags-orphans" / "c.sqlite3"
    l2 = SQLiteStore(path, clock=clock, tag_retention_s=3600)
    store = TieredStore(l2=l2, clock=clock)
    people = _people(7)
    for i, (ssn, mail) in enumerate(people):
        key = hashlib.sha256(f"o{i}".encode()).hexdigest()
        store.put(
            key, b"v", tenant=f"t{i % 3}", entry_type="m", tags=[f"person:{ssn}", f"mail:{mail}"], ttl_s=60
        )
        if i % 4 == 0:
            store.invalidate(f"person:{ssn}", tenant=f"t{i % 3}")
    store.flush(30)
    clock.now += 120 + 3600  # past every entry's TTL and the generations' retention
    while l2.purge_expired(limit=1000):
        pass
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT COUNT(*) FROM pc_entry_tags t "
            "WHERE NOT EXISTS (SELECT 1 FROM pc_entries e WHERE e.key = t.key)"
        ).fetchone()[0]
        gens = db.execute(
            "SELECT COUNT(*) FROM pc_tag_gens g "
            "WHERE NOT EXISTS (SELECT 1 FROM pc_entry_tags t WHERE t.tag = g.tag)"
        ).fetchone()[0]
    store.close()
    out: dict[str, Any] = {
        "entries": len(people),
        "sqlite_orphan_tag_rows": rows,
        "sqlite_orphan_generations": gens,
    }
    if redis_url:
        import redis

        from promptcache.tiers._async.redis import EPOCH_FIELD
        from promptcache.tiers.redis import RedisStore

        ns = "orph" + uuid.uuid4().hex[:8]
        # a 2 s retention: a generation may go 2 s after its last invalidation once no entry carries it
        rstore = TieredStore(l2=RedisStore(redis_url, namespace=ns, tag_retention_s=2), bus=LocalBus())
        for i, (ssn, mail) in enumerate(people[:100]):
            if i % 4 == 0:
                rstore.invalidate(f"person:{ssn}", tenant="t")
            key = hashlib.sha256(f"r{i}".encode()).hexdigest()
            rstore.put(key, b"v", tenant="t", entry_type="m", tags=[f"person:{ssn}", f"mail:{mail}"], ttl_s=1)
        rstore.flush(30)
        c = redis.Redis.from_url(redis_url)
        before = sum(1 for _ in c.scan_iter(match=f"{ns}:*:t:*", count=1000))
        no_ttl = sum(1 for k in c.scan_iter(match=f"{ns}:*:t:*", count=1000) if c.pttl(k) == -1)
        gens_live = sum(c.hlen(k) for k in c.scan_iter(match=f"{ns}:*:g", count=1000))
        time.sleep(6.5)  # the entries' Redis TTL: 1 s and the 5 s expiry slack
        after = sum(1 for _ in c.scan_iter(match=f"{ns}:*:t:*", count=1000))
        entries_left = sum(1 for _ in c.scan_iter(match=f"{ns}:*:e:*", count=1000))
        rstore.invalidate("cleanup:trigger")  # each invalidation also cleans up old generations
        trigger = rstore.tag_name("cleanup:trigger")  # just invalidated: kept for its retention
        # the store epoch is a field of bucket 0's generation hash, not a tag's generation
        gens_after = sum(
            c.hlen(k) - c.hexists(k, trigger) - c.hexists(k, EPOCH_FIELD)
            for k in c.scan_iter(match=f"{ns}:*:g", count=1000)
        )
        c.close()
        rstore.close()
        out.update(
            redis_tag_sets_while_live=before,
            redis_tag_sets_without_expiry=no_ttl,
            redis_entries_left_after_expiry=entries_left,
            redis_tag_sets_left_after_expiry=after,
            redis_generation_fields_while_live=gens_live,
            redis_generation_fields_left_after_expiry=gens_after,
        )
    return out


def _cross_tenant_one(
    make: Any, n_tenants: int, n_tags: int, rounds: int, rnd: random.Random
) -> dict[str, int]:
    from promptcache.artifacts import ToolOutputCache, ToolSpec

    read = ToolSpec(name="get_reservation", side_effect="read_only", tags=["reservation:{rid}"], ttl=3600)
    write = ToolSpec(
        name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{rid}"]
    )
    workers = [ToolOutputCache(make()), ToolOutputCache(make())]  # two views of one L2
    tenants = [f"tenant{i}" for i in range(n_tenants)]
    rids = [f"R{i}" for i in range(n_tags)]
    cross = own_kept = writes = 0
    for _ in range(rounds):
        for t in tenants:  # every tenant caches every reservation
            for rid in rids:
                rnd.choice(workers).call(read, {"rid": rid}, lambda rid: {"rid": rid}, tenant=t)
        for wk in workers:
            wk.store.flush(30)
        writer_tenant, rid = rnd.choice(tenants), rnd.choice(rids)
        rnd.choice(workers).call(write, {"rid": rid}, lambda rid: "ok", tenant=writer_tenant)
        writes += 1
        for t in tenants:
            hit = rnd.choice(workers).call(read, {"rid": rid}, lambda rid: {"rid": rid}, tenant=t).lookup.hit
            if t == writer_tenant and hit:
                own_kept += 1  # the write's own tenant still served: invalidation did not work
            elif t != writer_tenant and not hit:
                cross += 1
        for wk in workers:
            wk.store.flush(30)
    for wk in workers:
        wk.store.close()
    return {"writes": writes, "cross_tenant_invalidations": cross, "own_entries_not_invalidated": own_kept}


def cross_tenant(tmp: Path, redis_url: str | None, quick: bool) -> dict[str, Any]:
    """Writes by one tenant, reads by all, on two stores sharing each L2."""
    from promptcache.invalidation import LocalBus
    from promptcache.tiers import MemoryStore, SQLiteStore, TieredStore
    from promptcache.tiers.redis import RedisStore

    rnd = random.Random(3)
    n_tenants, n_tags, rounds = (4, 10, 5) if quick else (8, 20, 20)
    path = tmp / "tags-cross" / "c.sqlite3"
    out = {
        "sqlite": _cross_tenant_one(
            lambda: TieredStore(l1=MemoryStore(), l2=SQLiteStore(path), bus=LocalBus(), max_staleness_s=0.0),
            n_tenants,
            n_tags,
            rounds,
            rnd,
        )
    }
    if redis_url:
        ns = "x" + uuid.uuid4().hex[:8]
        out["redis"] = _cross_tenant_one(
            lambda: TieredStore(
                l1=MemoryStore(), l2=RedisStore(redis_url, namespace=ns), bus=LocalBus(), max_staleness_s=0.0
            ),
            n_tenants,
            n_tags,
            rounds,
            rnd,
        )
    return out


def memory_at(n_tags: int) -> dict[str, Any]:
    """tracemalloc growth of one process's tag-generation table after ``n_tags`` distinct tags."""
    from promptcache.tiers import TieredStore

    store = TieredStore()
    store.invalidate("warm:up")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n_tags):
        store.invalidate(f"person:{i:09d}")
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    out = {
        "tags": n_tags,
        "mb": round(grown / 1e6, 1),
        "table": len(store.generations),
        "bound": store.generations.max_tags,
    }
    store.close()
    return out


def tags(tmp: Path, quick: bool, redis_url: str | None) -> dict[str, Any]:
    """The section: each figure and whether it meets its target."""
    pii = pii_in_stores(tmp, redis_url)
    orphans = orphans_after_purge(tmp, redis_url)
    cross = cross_tenant(tmp, redis_url, quick)
    memory = [memory_at(100_000)] + ([] if quick else [memory_at(200_000)])
    in_clear = pii["sqlite_in_clear"] + pii.get("redis_in_clear", 0)
    orphan_total = (
        orphans["sqlite_orphan_tag_rows"]
        + orphans["sqlite_orphan_generations"]
        + orphans.get("redis_tag_sets_left_after_expiry", 0)
        + orphans.get("redis_generation_fields_left_after_expiry", 0)
    )
    crossed = sum(v["cross_tenant_invalidations"] for v in cross.values())
    own_kept = sum(v["own_entries_not_invalidated"] for v in cross.values())
    return {
        "pii_tag_values_in_clear": in_clear,
        "orphans_after_purge": orphan_total,
        "cross_tenant_invalidations": crossed,
        "memory_mb_at_100k_tags": memory[0]["mb"],
        "pii": pii,
        "orphans": orphans,
        "cross_tenant": cross,
        "memory": memory,
        "redis": redis_url is not None,
        "passed": in_clear == 0
        and orphan_total == 0
        and crossed == 0
        and own_kept == 0
        and all(m["table"] <= m["bound"] for m in memory)
        and redis_url is not None
        and orphans.get("redis_tag_sets_while_live", 0) > 0
        and orphans.get("redis_generation_fields_while_live", 0) > 0,
    }
