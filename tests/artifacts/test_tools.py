"""ToolOutputCache: side-effect classes, keys, tags, TTLs, secrets, faults — on real SQLite and Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptcache.artifacts import McpAnnotations, SideEffect, ToolOutputCache, ToolSpec
from promptcache.policy import Policy
from promptcache.tiers import SQLiteStore, TieredStore

from .conftest import StoreFactory

SECRET = "AKIAIOSFODNN7EXAMPLE"

READ = ToolSpec(
    name="get_reservation", side_effect="read_only", tags=["reservation:{reservation_id}"], ttl=600
)
UPDATE = ToolSpec(
    name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{reservation_id}"]
)


class Db:
    """A stand-in for the system the tools talk to, counting every real call."""

    def __init__(self) -> None:
        self.version: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def get(self, reservation_id: str) -> dict[str, Any]:
        self._count("get")
        return {"id": reservation_id, "version": self.version.get(reservation_id, 0)}

    def update(self, reservation_id: str) -> str:
        self._count("update")
        self.version[reservation_id] = self.version.get(reservation_id, 0) + 1
        return "ok"


@pytest.fixture
def env(shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]]) -> tuple[ToolOutputCache, Db, TieredStore]:
    make, _ = shared_l2
    store = make(max_staleness_s=5.0)  # one worker: its L1 may vouch for what it wrote
    return ToolOutputCache(store, Policy()), Db(), store


def test_read_only_is_served_from_cache_and_keyed_by_everything_that_matters(
    env: tuple[ToolOutputCache, Db, TieredStore],
) -> None:
    tools, db, _ = env
    first = tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t1")
    again = tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t1")
    assert (first.lookup.hit, again.lookup.hit, again.lookup.tier) == (False, True, "l1")
    assert first.lookup.stored and first.lookup.ttl_seconds == 600
    assert again.value == first.value and db.calls["get"] == 1
    assert again.trust == "untrusted"
    # every one of these is a different key: each must call the tool
    assert not tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t2").lookup.hit
    assert not tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t1", scope="user:7").lookup.hit
    assert not tools.call(READ, {"reservation_id": "B"}, db.get, tenant="t1").lookup.hit
    v2 = READ.model_copy(update={"schema_version": "2"})
    assert not tools.call(v2, {"reservation_id": "A"}, db.get, tenant="t1").lookup.hit
    assert db.calls["get"] == 5
    assert tools.stats().hits == 1 and tools.stats().misses == 5


def test_canonical_arguments_share_a_key(env: tuple[ToolOutputCache, Db, TieredStore]) -> None:
    tools, _, _ = env
    spec = ToolSpec(name="search", side_effect="pure")
    calls = []

    def search(**kw: Any) -> list[str]:
        calls.append(kw)
        return ["r1"]

    tools.call(spec, {"q": "x", "opts": {"k": 3, "lang": "en"}}, search, tenant="t")
    hit = tools.call(spec, {"opts": {"lang": "en", "k": 3}, "q": "x"}, search, tenant="t")
    assert hit.lookup.hit and len(calls) == 1


@pytest.mark.parametrize("side_effect", [None, "idempotent_write", "side_effecting"])
def test_writes_and_undeclared_tools_are_never_served(
    env: tuple[ToolOutputCache, Db, TieredStore], side_effect: str | None
) -> None:
    tools, _, store = env
    spec = ToolSpec(name="charge_card", side_effect=side_effect)
    assert spec.effective_side_effect in (SideEffect.IDEMPOTENT_WRITE, SideEffect.SIDE_EFFECTING)
    n = []
    for _ in range(3):
        out = tools.call(spec, {"amount": 5}, lambda amount: n.append(amount) or len(n), tenant="t")
        assert not out.lookup.hit and not out.lookup.stored
    assert n == [5, 5, 5] and tools.stats().bypassed == 3
    store.flush()
    assert len(store.l1) == 0  # nothing was even written


def test_a_write_invalidates_its_templated_tags(
    shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]],
) -> None:
    make, _ = shared_l2
    a, b = make(), make()  # two workers on one L2
    ta, tb, db = ToolOutputCache(a), ToolOutputCache(b), Db()
    tb.call(READ, {"reservation_id": "A"}, db.get, tenant="t")
    tb.call(READ, {"reservation_id": "B"}, db.get, tenant="t")
    b.flush()
    assert ta.call(READ, {"reservation_id": "A"}, db.get, tenant="t").lookup.tier == "l2"
    w = ta.call(UPDATE, {"reservation_id": "A"}, db.update, tenant="t")
    assert w.value == "ok" and w.lookup.invalidated == ("reservation:A",) and not w.lookup.invalidation_failed
    got_a = ta.call(READ, {"reservation_id": "A"}, db.get, tenant="t")
    assert not got_a.lookup.hit and got_a.value["version"] == 1
    # the other worker never serves the old version (it may serve the new one ta just wrote back)
    assert tb.call(READ, {"reservation_id": "A"}, db.get, tenant="t").value["version"] == 1
    assert tb.call(READ, {"reservation_id": "B"}, db.get, tenant="t").lookup.hit  # other ids untouched
    assert ta.stats().invalidations == 1


def test_a_write_whose_tag_cannot_be_filled_still_runs_and_reports(
    env: tuple[ToolOutputCache, Db, TieredStore],
) -> None:
    tools, db, _ = env
    out = tools.call(UPDATE, {"id": "A"}, lambda id: db.update(id), tenant="t")
    assert out.value == "ok" and out.lookup.invalidation_failed == ("reservation:{reservation_id}",)
    assert "reservation_id" in out.lookup.why and tools.stats().invalidation_failed == 1


@pytest.mark.redis
def test_invalidation_failure_after_a_write_returns_the_result_and_is_counted(redis_factory: Any) -> None:
    server = redis_factory()
    store = TieredStore.from_redis(server.url)
    tools, db = ToolOutputCache(store), Db()
    try:
        tools.call(READ, {"reservation_id": "A"}, db.get, tenant="t")
        server.kill()  # the shared tier is gone when the write has to invalidate
        out = tools.call(UPDATE, {"reservation_id": "A"}, db.update, tenant="t")
        assert out.value == "ok" and db.version["A"] == 1  # the write happened and its result is returned
        assert out.lookup.invalidation_failed == ("reservation:A",) and out.lookup.invalidated == ()
        assert "stale" in out.lookup.why
        assert tools.stats().invalidation_failed == 1
        # reads still work, uncached or from L1, and never raise
        assert tools.call(READ, {"reservation_id": "B"}, db.get, tenant="t").value["id"] == "B"
    finally:
        store.close(timeout=1)


def test_invalidation_failed_from_a_broken_l2(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    store = TieredStore(l2=l2)

    def boom(tag: str) -> int:
        raise OSError("disk gone")

    l2.invalidate_tag = boom  # type: ignore[method-assign]
    tools, db = ToolOutputCache(store), Db()
    out = tools.call(UPDATE, {"reservation_id": "A"}, db.update, tenant="t")
    assert out.value == "ok" and out.lookup.invalidation_failed == ("reservation:A",)
    store.close()


def test_non_json_arguments_run_uncached_and_name_the_argument(
    env: tuple[ToolOutputCache, Db, TieredStore],
) -> None:
    tools, _, _ = env
    spec = ToolSpec(name="lookup", side_effect="pure")
    n = []
    for _ in range(2):
        out = tools.call(spec, {"q": "x", "when": object()}, lambda q, when: n.append(1) or "r", tenant="t")
        assert out.value == "r" and not out.lookup.hit
        assert "'when'" in out.lookup.why and "JSON" in out.lookup.why
    assert len(n) == 2 and tools.stats().unkeyable == 2


def test_secret_output_is_returned_but_never_written(
    shared_l2: tuple[StoreFactory, Callable[[], list[bytes]]],
) -> None:
    make, raw = shared_l2
    store = make()
    tools = ToolOutputCache(store)
    spec = ToolSpec(name="read_config", side_effect="read_only")
    n = []
    for _ in range(2):
        out = tools.call(spec, {"f": "env"}, lambda f: n.append(1) or {"aws": SECRET}, tenant="t")
        assert out.value == {"aws": SECRET} and not out.lookup.stored and "secret" in out.lookup.why
    assert len(n) == 2 and tools.stats().refused_secret == 2
    tools.call(spec, {"f": "ok"}, lambda f: {"x": 1}, tenant="t")  # something is stored...
    store.flush()
    blobs = raw()
    assert blobs and not any(SECRET.encode() in b for b in blobs)  # ...but never the secret


def test_pii_shortens_the_ttl_and_the_policy_clamps_it(env: tuple[ToolOutputCache, Db, TieredStore]) -> None:
    tools, _, store = env
    spec = ToolSpec(name="profile", side_effect="read_only", ttl="2h")
    out = tools.call(spec, {"u": 1}, lambda u: {"email": "ann@example.com"}, tenant="t")
    assert out.lookup.stored and out.lookup.ttl_seconds == 3600 and "pii.email" in out.lookup.why
    entry = store.get(_key_of(store), tenant="t")
    assert entry is not None and entry.expires_at is not None
    assert entry.expires_at - entry.created_at == pytest.approx(3600)
    assert tools.call(spec, {"u": 1}, lambda u: {"email": "x"}, tenant="t").lookup.hit
    long = ToolSpec(name="static", side_effect="pure", ttl="30d")
    assert tools.call(long, {}, lambda: 1, tenant="t").lookup.ttl_seconds == 86400  # policy max
    denied = ToolSpec(name="iban", side_effect="pure")
    out = tools.call(denied, {}, lambda: "DE44 5001 0517 5407 3249 31", tenant="t")
    assert not out.lookup.stored and "denied" in out.lookup.why


def _key_of(store: TieredStore) -> str:
    keys = list(store.l1._data)
    assert len(keys) == 1
    return keys[0]


def test_a_policy_that_makes_tool_outputs_ineligible_bypasses(tmp_path: Path) -> None:
    policy = Policy.load({"entries": {"tool_output": {"eligible": False}}})
    tools = ToolOutputCache(TieredStore(), policy)
    spec = ToolSpec(name="s", side_effect="pure")
    assert not tools.call(spec, {}, lambda: 1, tenant="t").lookup.stored
    assert not tools.call(spec, {}, lambda: 1, tenant="t").lookup.hit


def test_public_scope_only_when_the_policy_allows_it() -> None:
    spec = ToolSpec(name="s", side_effect="pure")
    closed = ToolOutputCache(TieredStore())
    assert "allow_public" in closed.call(spec, {}, lambda: 1, tenant="t1", scope="public").lookup.why
    opened = ToolOutputCache(TieredStore(), Policy(allow_public=True))
    opened.call(spec, {}, lambda: 1, tenant="t1", scope="public")
    assert opened.call(spec, {}, lambda: 2, tenant="t2", scope="public").value == 1  # shared on purpose


def test_user_exceptions_propagate_and_nothing_is_cached(
    env: tuple[ToolOutputCache, Db, TieredStore],
) -> None:
    tools, _, _ = env
    spec = ToolSpec(name="flaky", side_effect="read_only")

    def fail() -> None:
        raise LookupError("upstream 404")

    with pytest.raises(LookupError, match="upstream 404"):
        tools.call(spec, {}, fail, tenant="t")
    assert tools.call(spec, {}, lambda: "ok", tenant="t").value == "ok"
    assert tools.stats().cache_errors == 0


def test_a_router_fault_runs_the_call_uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    store = TieredStore()
    tools = ToolOutputCache(store)

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("router bug")

    monkeypatch.setattr(store, "get_or_compute", broken)
    out = tools.call(READ, {"reservation_id": "A"}, Db().get, tenant="t")
    assert out.value["id"] == "A" and "cache fault" in out.lookup.why and tools.stats().cache_errors == 1


def test_unserializable_output_is_returned_uncached() -> None:
    tools = ToolOutputCache(TieredStore())
    spec = ToolSpec(name="s", side_effect="pure")
    marker = object()
    out = tools.call(spec, {}, lambda: marker, tenant="t")
    assert out.value is marker and not out.lookup.stored and tools.stats().unserializable == 1


def test_concurrent_identical_misses_run_the_tool_once(env: tuple[ToolOutputCache, Db, TieredStore]) -> None:
    tools, _, _ = env
    spec = ToolSpec(name="slow", side_effect="pure")
    gate, n = threading.Event(), []

    def slow(x: int) -> int:
        n.append(x)
        gate.wait(5)
        return x * 2

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(tools.call(spec, {"x": 21}, slow, tenant="t")))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    threading.Timer(0.2, gate.set).start()
    for t in threads:
        t.join(10)
    assert len(n) == 1 and [r.value for r in results] == [42] * 16
    assert sum(r.lookup.tier == "flight" for r in results) == 15


def test_mcp_annotations_map_to_classes() -> None:
    def cls(**hints: bool) -> SideEffect:
        return McpAnnotations.model_validate(hints).side_effect()

    assert cls(readOnlyHint=True) is SideEffect.READ_ONLY
    assert cls(readOnlyHint=True, destructiveHint=True) is SideEffect.READ_ONLY
    assert cls(idempotentHint=True, destructiveHint=False) is SideEffect.IDEMPOTENT_WRITE
    assert cls(idempotentHint=True) is SideEffect.SIDE_EFFECTING  # destructive by MCP default
    assert cls() is SideEffect.SIDE_EFFECTING
    mcp_tool = {"name": "list_files", "inputSchema": {}, "annotations": {"readOnlyHint": True, "title": None}}
    assert ToolSpec.from_mcp(mcp_tool).effective_side_effect is SideEffect.READ_ONLY

    class Ann:  # the attribute form of mcp.types.ToolAnnotations
        def model_dump(self, **kw: Any) -> dict[str, Any]:
            return {"readOnlyHint": False, "destructiveHint": True}

    class Tool:
        name = "rm"
        annotations = Ann()

    assert ToolSpec.from_mcp(Tool()).effective_side_effect is SideEffect.SIDE_EFFECTING
    # an explicit declaration wins over the hints
    assert ToolSpec.from_mcp(mcp_tool, side_effect="pure").effective_side_effect is SideEffect.PURE


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="only writes invalidate"):
        ToolSpec(name="r", side_effect="read_only", invalidates=["x:{id}"])
    with pytest.raises(ValueError, match="placeholders"):
        ToolSpec(name="r", side_effect="read_only", tags=["x:{id.__class__}"])


async def test_async_twin_serves_and_invalidates(env: tuple[ToolOutputCache, Db, TieredStore]) -> None:
    tools, db, _ = env

    async def aget(reservation_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return db.get(reservation_id)

    assert not (await tools.acall(READ, {"reservation_id": "A"}, aget, tenant="t")).lookup.hit
    assert (await tools.acall(READ, {"reservation_id": "A"}, aget, tenant="t")).lookup.hit
    w = await tools.acall(UPDATE, {"reservation_id": "A"}, db.update, tenant="t")  # a sync fn is fine
    assert w.lookup.invalidated == ("reservation:A",)
    after = await tools.acall(READ, {"reservation_id": "A"}, aget, tenant="t")
    assert not after.lookup.hit and after.value["version"] == 1
    with pytest.raises(ValueError, match="nope"):
        await tools.acall(ToolSpec(name="x", side_effect="pure"), {}, _araise, tenant="t")


async def _araise() -> None:
    raise ValueError("nope")


def test_a_foreign_entry_under_the_key_is_a_counted_miss_never_an_error() -> None:
    store = TieredStore()
    tools = ToolOutputCache(store)
    spec = ToolSpec(name="s", side_effect="pure")
    tools.call(spec, {}, lambda: 1, tenant="t")
    store.put(_key_of(store), b"\x00not ours", tenant="t", entry_type="tool_output", tags=["tool:s"])
    out = tools.call(spec, {}, lambda: 2, tenant="t")
    assert out.value == 2 and not out.lookup.hit and tools.stats().corrupt == 1


async def test_async_pii_shortening_writes_with_the_short_ttl() -> None:
    store = TieredStore()
    tools = ToolOutputCache(store)
    spec = ToolSpec(name="profile", side_effect="read_only", ttl="2h")

    async def profile(u: int) -> dict[str, str]:
        return {"phone": "+1 415 555 0100"}

    out = await tools.acall(spec, {"u": 1}, profile, tenant="t")
    assert out.lookup.stored and out.lookup.ttl_seconds == 3600
    entry = store.get(_key_of(store), tenant="t")
    assert entry is not None and entry.expires_at is not None
    assert entry.expires_at - entry.created_at == pytest.approx(3600)
    assert (await tools.acall(spec, {"u": 1}, profile, tenant="t")).lookup.hit
