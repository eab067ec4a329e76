"""The artifact flow says what happened as a value: hit, stored, or not stored and why."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from promptcache.artifacts import (
    LookupReason,
    Outcome,
    ResponseCache,
    Served,
    ToolOutputCache,
    ToolSpec,
    Uncacheable,
)
from promptcache.policy import Policy
from promptcache.tiers import SQLiteStore, TieredStore

READ = ToolSpec(name="get_fare", side_effect="read_only")


@pytest.fixture
def tools(tmp_path: Path) -> ToolOutputCache:
    return ToolOutputCache(TieredStore(l2=SQLiteStore(tmp_path / "c.sqlite3")))


def test_outcomes_of_a_miss_a_hit_and_a_refusal(tools: ToolOutputCache) -> None:
    first = tools.call(READ, {"route": "SFO-JFK"}, lambda route: {"usd": 210}, tenant="acme")
    assert first.lookup.outcome is Outcome.STORED and first.lookup.reason is LookupReason.STORED
    again = tools.call(READ, {"route": "SFO-JFK"}, lambda route: {"usd": 999}, tenant="acme")
    assert again.lookup.outcome is Outcome.HIT and again.value == {"usd": 210}
    assert again.lookup.reason is LookupReason.HIT
    secret = tools.call(READ, {"route": "X"}, lambda route: {"key": "AKIAIOSFODNN7EXAMPLE"}, tenant="acme")
    assert secret.lookup.outcome is Outcome.NOT_STORED and secret.lookup.reason is LookupReason.SECRET
    write = ToolSpec(name="book", side_effect="side_effecting")
    booked = tools.call(write, {"route": "X"}, lambda route: "ok", tenant="acme")
    assert booked.lookup.reason is LookupReason.SIDE_EFFECT


PURE = ToolSpec(name="lookup", side_effect="pure")
BOOK = ToolSpec(name="book", side_effect="side_effecting")
AWS_KEY = {"key": "AKIAIOSFODNN7EXAMPLE"}
IBAN = "DE44 5001 0517 5407 3249 31"  # pii.financial: the default policy denies it


def _over_a_foreign_entry(compute: object, *, put_fails: bool = False) -> Served[object]:
    """A call whose key holds an entry that is not ours: recomputed, then written over (or not)."""
    store = TieredStore()
    tools = ToolOutputCache(store)
    tools.call(PURE, {"q": "f"}, lambda q: 1, tenant="t")
    (key,) = list(store.l1._data)
    store.put(key, b"\x00not ours", tenant="t", entry_type="tool_output", tags=["tool:lookup"])
    if put_fails:

        def broken(*a: object, **k: object) -> int:
            raise OSError("disk full")

        store.put = broken  # type: ignore[method-assign,assignment]
    return tools.run(PURE, {"q": "f"}, compute, tenant="t")  # type: ignore[arg-type]


def test_each_decision_sets_its_reason_on_the_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code that decides sets the typed reason; ``why`` only renders it (nothing parses words)."""
    tools = ToolOutputCache(TieredStore())
    closed = ToolOutputCache(TieredStore(), Policy.load({"entries": {"tool_output": {"eligible": False}}}))
    responses = ResponseCache(TieredStore())
    ask = {"model": "gpt-4o-mini", "messages": [], "temperature": 0.9}
    faulty = ToolOutputCache(TieredStore())

    def router_bug(*a: object, **k: object) -> object:
        raise RuntimeError("router bug")

    monkeypatch.setattr(faulty.store, "get_or_compute", router_bug)
    cases: dict[LookupReason, Served[object]] = {
        LookupReason.STORED: tools.call(PURE, {"q": 1}, lambda q: 1, tenant="t"),
        LookupReason.HIT: tools.call(PURE, {"q": 1}, lambda q: 2, tenant="t"),
        LookupReason.SIDE_EFFECT: tools.call(BOOK, {}, lambda: 1, tenant="t"),
        LookupReason.SECRET: tools.call(PURE, {"q": 2}, lambda q: AWS_KEY, tenant="t"),
        LookupReason.PII: tools.call(PURE, {"q": 3}, lambda q: IBAN, tenant="t"),
        LookupReason.UNSERIALIZABLE: tools.call(PURE, {"q": 4}, lambda q: object(), tenant="t"),
        LookupReason.UNKEYABLE: tools.call(PURE, {"q": object()}, lambda q: 1, tenant="t"),
        LookupReason.TENANT_MISSING: tools.call(PURE, {"q": 5}, lambda q: 1, tenant=""),
        LookupReason.POLICY_DENIED: closed.call(PURE, {"q": 6}, lambda q: 1, tenant="t"),
        LookupReason.UNCACHEABLE: tools.run(
            PURE, {"q": 7}, lambda: 1, tenant="t", storable=lambda v: Uncacheable("error result")
        ),
        LookupReason.INELIGIBLE: responses.call(ask, lambda r: {"label": "x"}, tenant="t"),
        LookupReason.CACHE_FAULT: faulty.call(PURE, {"q": 8}, lambda q: 1, tenant="t"),
        LookupReason.UNREADABLE: _over_a_foreign_entry(lambda: AWS_KEY),
        LookupReason.STORE_FAILED: _over_a_foreign_entry(lambda: 2, put_fails=True),
    }
    for want, served in cases.items():
        lookup = served.lookup
        assert lookup.reason is want, (want, lookup.why)
        assert lookup.why.startswith(want.text) or lookup.why.startswith("hit in"), lookup.why
        assert lookup.hit == (want is LookupReason.HIT)
        assert lookup.stored == (want is LookupReason.STORED)
    # a public scope the policy does not allow is the policy's refusal, not a missing key
    public = tools.call(PURE, {"q": 9}, lambda q: 1, tenant="t", scope="public").lookup
    assert public.reason is LookupReason.POLICY_DENIED and "allow_public" in public.detail
    # a response request holding a secret is refused as a secret, one holding PII as PII
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    mail = {**ask, "temperature": 0, "response_format": schema}
    mail["messages"] = [{"role": "user", "content": "mail ann@example.com"}]
    assert responses.check(mail).denial is LookupReason.PII
    assert responses.call(mail, lambda r: {}, tenant="t").lookup.reason is LookupReason.PII


def test_run_takes_a_zero_argument_compute_and_a_storable_form(tools: ToolOutputCache) -> None:
    def storable(result: dict[str, object]) -> object:
        return Uncacheable("error result") if result.get("error") else {"usd": result["usd"]}

    failed = tools.run(READ, {"route": "A"}, lambda: {"error": True}, tenant="t", storable=storable)
    assert failed.value == {"error": True}
    assert failed.lookup.reason is LookupReason.UNCACHEABLE and not failed.lookup.stored
    ok = tools.run(READ, {"route": "A"}, lambda: {"usd": 1, "debug": "x"}, tenant="t", storable=storable)
    assert ok.lookup.outcome is Outcome.STORED and ok.value == {"usd": 1, "debug": "x"}  # the caller's own
    hit = tools.run(READ, {"route": "A"}, lambda: {"usd": 2}, tenant="t", storable=storable)
    assert hit.lookup.outcome is Outcome.HIT and hit.value == {"usd": 1}  # the stored form
    assert tools.stats().stored == 1


def test_an_uncacheable_result_is_never_shared_with_concurrent_callers(tools: ToolOutputCache) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def compute() -> dict[str, object]:
        calls.append(1)
        if len(calls) == 1:
            assert gate.wait(10)
            return {"error": True, "who": "leader"}
        return {"error": True, "who": "own"}

    def storable(result: dict[str, object]) -> object:
        return Uncacheable("error result")

    results: list[object] = []

    def worker() -> None:
        results.append(tools.run(READ, {"route": "B"}, compute, tenant="t", storable=storable).value)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    while tools.store.stats().single_flight_waiters < 3:
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    # the leader's error result stays the leader's: each waiter ran its own call
    assert sorted(str(r) for r in results).count(str({"error": True, "who": "leader"})) == 1
    assert len(calls) == 4


def test_the_users_exception_is_raised_unchanged_to_every_caller(tools: ToolOutputCache) -> None:
    boom = LookupError("upstream said no")

    def fail() -> dict[str, object]:
        raise boom

    with pytest.raises(LookupError) as caught:
        tools.run(READ, {"route": "C"}, fail, tenant="t")
    assert caught.value is boom
    assert tools.stats().cache_errors == 0 and tools.stats().stored == 0

    async def afail() -> dict[str, object]:
        raise boom

    with pytest.raises(LookupError) as acaught:
        asyncio.run(tools.arun(READ, {"route": "C"}, afail, tenant="t"))
    assert acaught.value is boom


def test_even_a_stop_iteration_from_the_users_function_reaches_the_user(tools: ToolOutputCache) -> None:
    stop = StopIteration("the user's")

    def fail() -> dict[str, object]:
        raise stop

    with pytest.raises(StopIteration) as caught:
        tools.run(READ, {"route": "D"}, fail, tenant="t")
    assert caught.value is stop and tools.stats().cache_errors == 0
