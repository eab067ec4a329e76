"""The artifact flow says what happened as a value: hit, stored, or not stored and why."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from promptcache.artifacts import NotStored, Outcome, ToolOutputCache, ToolSpec, Uncacheable
from promptcache.tiers import SQLiteStore, TieredStore

READ = ToolSpec(name="get_fare", side_effect="read_only")


@pytest.fixture
def tools(tmp_path: Path) -> ToolOutputCache:
    return ToolOutputCache(TieredStore(l2=SQLiteStore(tmp_path / "c.sqlite3")))


def test_outcomes_of_a_miss_a_hit_and_a_refusal(tools: ToolOutputCache) -> None:
    first = tools.call(READ, {"route": "SFO-JFK"}, lambda route: {"usd": 210}, tenant="acme")
    assert first.lookup.outcome is Outcome.STORED and first.lookup.reason is None
    again = tools.call(READ, {"route": "SFO-JFK"}, lambda route: {"usd": 999}, tenant="acme")
    assert again.lookup.outcome is Outcome.HIT and again.value == {"usd": 210}
    secret = tools.call(READ, {"route": "X"}, lambda route: {"key": "AKIAIOSFODNN7EXAMPLE"}, tenant="acme")
    assert secret.lookup.outcome is Outcome.NOT_STORED and secret.lookup.reason is NotStored.SECRET
    write = ToolSpec(name="book", side_effect="side_effecting")
    booked = tools.call(write, {"route": "X"}, lambda route: "ok", tenant="acme")
    assert booked.lookup.reason is NotStored.BYPASSED


def test_run_takes_a_zero_argument_compute_and_a_storable_form(tools: ToolOutputCache) -> None:
    def storable(result: dict[str, object]) -> object:
        return Uncacheable("error result") if result.get("error") else {"usd": result["usd"]}

    failed = tools.run(READ, {"route": "A"}, lambda: {"error": True}, tenant="t", storable=storable)
    assert failed.value == {"error": True}
    assert failed.lookup.reason is NotStored.UNCACHEABLE and not failed.lookup.stored
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
