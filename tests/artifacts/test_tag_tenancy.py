"""Issue 19, item 3 through the artifact caches: a tenant's write invalidates its own entries only.

Tool writes and explicit invalidations, sync and asyncio, on a real SQLite file and a real
redis-server; and two OS processes sharing one SQLite file: tenant A's write in one leaves
tenant B's cached tool output, cached by the other, in place.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptcache.artifacts import RetrievalCache, RetrieverSpec, ToolOutputCache, ToolSpec, open_store
from promptcache.tiers import TieredStore

from . import _tag_procs

StoreFactory = Callable[..., TieredStore]
READ = ToolSpec.model_validate(_tag_procs.READ_SPEC)
WRITE = ToolSpec(name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{rid}"])
PUBLIC_READ = ToolSpec(name="get_fare", side_effect="read_only", tags=["public:fare:{route}"])
PUBLIC_WRITE = ToolSpec(name="set_fare", side_effect="idempotent_write", invalidates=["public:fare:{route}"])


def _reader(owner: str) -> Callable[..., dict[str, str]]:
    return lambda rid: {"rid": rid, "owner": owner}


def test_a_tenants_write_leaves_other_tenants_cached_reads(shared_l2: tuple[StoreFactory, Any]) -> None:
    make, _ = shared_l2
    tools_a, tools_b = ToolOutputCache(make()), ToolOutputCache(make())  # two workers, one L2
    for tools, who in ((tools_a, "A"), (tools_b, "B")):
        tools.call(READ, {"rid": "R1"}, _reader(who), tenant=who)
        assert tools.store.flush()
    w = tools_a.call(WRITE, {"rid": "R1"}, lambda rid: "ok", tenant="A")
    assert w.lookup.invalidated == ("reservation:R1",)
    a = tools_a.call(READ, {"rid": "R1"}, _reader("A"), tenant="A")
    b = tools_b.call(READ, {"rid": "R1"}, _reader("B"), tenant="B")
    assert not a.lookup.hit  # A's own entry went
    assert b.lookup.hit and b.value["owner"] == "B"  # B's stayed
    # a public tag is shared by every tenant: A's write drops B's copy too
    for tools, who in ((tools_a, "A"), (tools_b, "B")):
        tools.call(PUBLIC_READ, {"route": "SFO-JFK"}, lambda route: {"usd": 1}, tenant=who)
        assert tools.store.flush()
    tools_a.call(PUBLIC_WRITE, {"route": "SFO-JFK"}, lambda route: "ok", tenant="A")
    again = tools_b.call(PUBLIC_READ, {"route": "SFO-JFK"}, lambda route: {"usd": 2}, tenant="B")
    assert not again.lookup.hit and again.value == {"usd": 2}


async def test_a_tenants_write_leaves_other_tenants_cached_reads_asyncio(
    shared_l2: tuple[StoreFactory, Any],
) -> None:
    make, _ = shared_l2
    tools_a, tools_b = ToolOutputCache(make()), ToolOutputCache(make())
    for tools, who in ((tools_a, "A"), (tools_b, "B")):
        await tools.acall(READ, {"rid": "R1"}, _reader(who), tenant=who)
        assert tools.store.flush()
    w = await tools_a.acall(WRITE, {"rid": "R1"}, lambda rid: "ok", tenant="A")
    assert w.lookup.invalidated == ("reservation:R1",)
    assert not (await tools_a.acall(READ, {"rid": "R1"}, _reader("A"), tenant="A")).lookup.hit
    b = await tools_b.acall(READ, {"rid": "R1"}, _reader("B"), tenant="B")
    assert b.lookup.hit and b.value["owner"] == "B"


def test_retrieval_invalidation_by_tenant_and_for_every_tenant(shared_l2: tuple[StoreFactory, Any]) -> None:
    make, _ = shared_l2
    rc = RetrievalCache(make())
    kb = RetrieverSpec(name="kb", tags=("kb:policies",))

    def docs(who: str) -> Callable[[str], list[dict[str, Any]]]:
        return lambda q: [{"id": "d1", "text": f"for {who}"}]

    for who in ("A", "B"):
        rc.retrieve("refunds", docs(who), tenant=who, retriever=kb)
    assert rc.store.flush()
    rc.invalidate("kb:policies", tenant="A")
    assert not rc.retrieve("refunds", docs("A"), tenant="A", retriever=kb).lookup.hit
    assert rc.retrieve("refunds", docs("B"), tenant="B", retriever=kb).lookup.hit
    rc.invalidate("kb:policies")  # every tenant
    assert not rc.retrieve("refunds", docs("B"), tenant="B", retriever=kb).lookup.hit


def test_two_processes_on_one_sqlite_file_tenant_a_leaves_tenant_b(tmp_path: Path) -> None:
    location = str(tmp_path / "cache")
    ctx = mp.get_context("spawn")
    q_out, q_in = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_tag_procs.tenant_b_reader, args=(location, q_out, q_in))
    child.start()
    try:
        ready = q_out.get(timeout=120)
        assert ready == ("ready", True)
        store = open_store(location, max_staleness_s=0.0)
        tools = ToolOutputCache(store)
        tools.call(READ, {"rid": "R1"}, _reader("A"), tenant="A")
        assert store.flush()
        w = tools.call(WRITE, {"rid": "R1"}, lambda rid: "ok", tenant="A")
        assert w.lookup.invalidated == ("reservation:R1",) and not w.lookup.invalidation_failed
        assert not tools.call(READ, {"rid": "R1"}, _reader("A"), tenant="A").lookup.hit
        q_in.put("go")
        after = q_out.get(timeout=120)
        assert after == ("after", True, "l2", "B"), after  # B's entry survived A's invalidation
        store.close()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
