"""A model-based test of the artifact caches over two workers sharing a real L2 (SQLite file, redis-server).

The model is the system of record itself: reservation versions per tenant,
documents per tenant and who may read them, and a count of real calls per tool.
Whatever the interleaving of reads, writes, reindexing, revocations, flushes and
L1 wipes across the two workers, every answer must equal what the system of
record says *now*:

* no stale read after an invalidation returned (the workers' L1s do not vouch
  for tagged entries, so every worker sees every invalidation through L2 at once);
* no cross-tenant read (a tenant's answer always names that tenant);
* a side-effecting tool runs on every call, never served;
* a secret is never written: every payload in both L1s and every raw value in
  the SQLite file / Redis keyspace is scanned for it;
* a document the tenant may no longer read is never served.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from promptcache.artifacts import RetrievalCache, RetrieverSpec, ToolOutputCache, ToolSpec
from promptcache.tiers import TieredStore

from .conftest import shared_l2_factory

SECRET = "AKIAIOSFODNN7EXAMPLE"
TENANTS = st.sampled_from(["t1", "t2"])
RIDS = st.sampled_from(["A", "B"])
WORKERS = st.integers(0, 1)
QUERIES = st.sampled_from(["refund policy", "  refund\npolicy ", "baggage"])

READ = ToolSpec(name="get_reservation", side_effect="read_only", tags=["reservation:{rid}"])
UPDATE = ToolSpec(name="update_reservation", side_effect="side_effecting", invalidates=["reservation:{rid}"])
CHARGE = ToolSpec(name="charge_card")  # undeclared: side-effecting
CONFIG = ToolSpec(name="read_config", side_effect="pure")
KB = RetrieverSpec(name="kb", index_version="1")
HITS = {"tools": 0, "retrieval": 0}  # hits over a run: the tests check the machine exercised hits at all


class ArtifactMachine(RuleBasedStateMachine):
    """Two workers; the system of record is the model."""

    kind = "sqlite"
    location: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.mkdtemp(prefix="pc-art-sm-")
        make, self.raw = shared_l2_factory(self.kind, self.location or self._tmp)
        self.stores: list[TieredStore] = [make(), make()]
        self.version: dict[tuple[str, str], int] = {}
        self.docs: dict[str, list[dict[str, Any]]] = {
            t: [
                {"id": f"{t}-d{i}", "text": f"{t} doc {i}", "metadata": {"tenant": t, "rev": 0}}
                for i in range(3)
            ]
            for t in ("t1", "t2")
        }
        self.readable: dict[str, set[str]] = {t: {d["id"] for d in self.docs[t]} for t in self.docs}
        self.calls: dict[str, int] = {"get": 0, "charge": 0}
        self.tools = [ToolOutputCache(s) for s in self.stores]
        self.retrieval = [RetrievalCache(s, authorize=self._authorize) for s in self.stores]

    def _authorize(self, tenant: str, ids: list[str]) -> list[str]:
        return [i for i in ids if i in self.readable[tenant]]

    # tools -------------------------------------------------------------------

    @rule(w=WORKERS, tenant=TENANTS, rid=RIDS, flush=st.sampled_from([True, True, False]))
    def read(self, w: int, tenant: str, rid: str, flush: bool) -> None:
        def get(rid: str) -> dict[str, Any]:
            self.calls["get"] += 1
            return {"tenant": tenant, "rid": rid, "version": self.version.get((tenant, rid), 0)}

        out = self.tools[w].call(READ, {"rid": rid}, get, tenant=tenant)
        assert out.value == {"tenant": tenant, "rid": rid, "version": self.version.get((tenant, rid), 0)}, (
            f"stale or foreign read: {out.lookup}"
        )
        if flush:  # let the write-back land, so that later reads can hit in L2
            self.stores[w].flush()

    @rule(w=WORKERS, tenant=TENANTS, rid=RIDS)
    def update(self, w: int, tenant: str, rid: str) -> None:
        def write(rid: str) -> str:
            self.version[(tenant, rid)] = self.version.get((tenant, rid), 0) + 1
            return "ok"

        out = self.tools[w].call(UPDATE, {"rid": rid}, write, tenant=tenant)
        assert out.value == "ok" and out.lookup.invalidated == (f"reservation:{rid}",)

    @rule(w=WORKERS, tenant=TENANTS, amount=st.integers(1, 3))
    def charge(self, w: int, tenant: str, amount: int) -> None:
        before = self.calls["charge"]

        def pay(amount: int) -> dict[str, Any]:
            self.calls["charge"] += 1
            return {"charged": amount}

        out = self.tools[w].call(CHARGE, {"amount": amount}, pay, tenant=tenant)
        assert self.calls["charge"] == before + 1 and not out.lookup.hit, "a side-effecting output was served"

    @rule(w=WORKERS, tenant=TENANTS, leak=st.booleans())
    def config(self, w: int, tenant: str, leak: bool) -> None:
        value = {"tenant": tenant, "key": SECRET if leak else "none"}
        out = self.tools[w].call(CONFIG, {"leak": leak}, lambda leak: dict(value), tenant=tenant)
        assert out.value == value
        if leak:
            assert not out.lookup.hit and not out.lookup.stored

    # retrieval ---------------------------------------------------------------

    @rule(w=WORKERS, tenant=TENANTS, q=QUERIES, flush=st.sampled_from([True, True, False]))
    def retrieve(self, w: int, tenant: str, q: str, flush: bool) -> None:
        out = self.retrieval[w].retrieve(
            q, lambda q: [dict(d) for d in self.docs[tenant]], tenant=tenant, retriever=KB
        )
        got = [(d["id"], d["text"], d["metadata"]) for d in out.value]
        expect = [(d["id"], d["text"], d["metadata"]) for d in self.docs[tenant]]
        if out.lookup.hit:  # a hit is re-authorized; a miss is the retriever's own answer
            expect = [e for e in expect if e[0] in self.readable[tenant]]
        assert got == expect, f"stale, foreign or unauthorized documents: {out.lookup}"
        if flush:
            self.stores[w].flush()

    @rule(w=WORKERS, tenant=TENANTS, doc=st.integers(0, 2), poison=st.booleans())
    def reindex(self, w: int, tenant: str, doc: int, poison: bool) -> None:
        d = self.docs[tenant][doc]
        d["metadata"] = {**d["metadata"], "rev": d["metadata"]["rev"] + 1}
        d["text"] = f"{tenant} doc {doc} token {SECRET}" if poison else f"{tenant} doc {doc}"
        self.retrieval[w].invalidate("index:kb@1")

    @rule(tenant=TENANTS, doc=st.integers(0, 2))
    def toggle_access(self, tenant: str, doc: int) -> None:
        self.readable[tenant] ^= {f"{tenant}-d{doc}"}  # no invalidation: the authorizer must catch it

    # infrastructure -----------------------------------------------------------

    @rule(w=WORKERS)
    def flush(self, w: int) -> None:
        assert self.stores[w].flush()

    @rule(w=WORKERS)
    def wipe_l1(self, w: int) -> None:
        self.stores[w].l1.clear()

    @invariant()
    def no_secret_in_l1(self) -> None:
        for s in self.stores:
            for entry, _, _ in list(s.l1._data.values()):
                assert SECRET.encode() not in (entry.payload or b""), "a secret reached L1"

    @invariant()
    def nothing_failed_silently(self) -> None:
        for t in self.tools + self.retrieval:
            assert t.stats().cache_errors == 0 and t.stats().corrupt == 0

    def teardown(self) -> None:
        try:
            HITS["tools"] += sum(t.stats().hits for t in self.tools)
            HITS["retrieval"] += sum(r.stats().hits for r in self.retrieval)
            for s in self.stores:
                s.flush()
            stored = self.raw()
            assert not any(SECRET.encode() in b for b in stored), "a secret reached the shared tier"
        finally:
            for s in self.stores:
                s.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


SETTINGS = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # A fixed exploration: the liveness floor below (enough hits of each kind)
    # must not depend on the luck of one random run.
    derandomize=True,
)


def _run(kind: str, location: str | None) -> None:
    machine: Callable[[], Any] = type(
        f"{kind}Machine", (ArtifactMachine,), {"kind": kind, "location": location}
    )
    test = machine.TestCase  # type: ignore[attr-defined]
    test.settings = SETTINGS
    HITS.update(tools=0, retrieval=0)
    test().runTest()
    # a machine that never hit would pass vacuously
    assert HITS["tools"] >= 10 and HITS["retrieval"] >= 10, HITS


def test_artifact_caches_against_the_model_on_sqlite() -> None:
    _run("sqlite", None)


@pytest.mark.redis
def test_artifact_caches_against_the_model_on_redis(redis_server: Any) -> None:
    _run("redis", redis_server.url)
