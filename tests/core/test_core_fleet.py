"""Issue 22, decision 7: a fleet learns once. Worker processes share their families' decisions
through the store (SQLite file or Redis), so a worker's first request of a family is laid out as
the fleet already learned it: one prefix per family across the fleet."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import _fleet_procs as procs
import pytest

from promptcache import PromptCache
from promptcache.pipeline.fleet import (
    LearnedSlot,
    LearnedState,
    adopt_state,
    export_state,
    merge_states,
)
from promptcache.pipeline.learning import Family


def _learn_in_first_worker(location: str) -> tuple[PromptCache, str]:
    """Worker 0 sees the clock change and moves it; returns its cache and its prefix key."""
    cache = PromptCache(store=location, record_stats=False, clock=procs.never_now)
    keys = []
    for minute in range(3):
        now = f"2026-12-07T09:{minute:02d}:00Z"
        p = cache.prepare_request(procs.body(now, f"question {minute}"), format="openai-chat", tenant="acme")
        keys.append(p.plan.prefix_key)
    assert keys[1] == keys[2] != keys[0]  # learned at the first change, moved from then on
    return cache, keys[-1]


def _wait_shared(cache: PromptCache, timeout: float = 20.0) -> None:
    """Until worker 0's decisions are in the store (they are written in the background)."""
    fam_key = next(iter(cache._fleet._known))  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        other = PromptCache(store=cache._store_spec, record_stats=False)
        contract = other.contract("acme", "gpt-4o")
        store = other.store
        entry = store.get(other._fleet.key(contract, fam_key), tenant="acme")  # type: ignore[union-attr]
        other.close()
        if entry is not None:
            return
        time.sleep(0.1)
    raise AssertionError("the family's decisions never reached the store")


def _fleet_first_calls(location: str, fleet: bool, n: int) -> list[tuple[int, str, int]]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    workers = [ctx.Process(target=procs.first_call, args=(location, fleet, w, q)) for w in range(1, n + 1)]
    for w in workers:
        w.start()
    try:
        out = [q.get(timeout=120) for _ in workers]
    finally:
        for w in workers:
            w.join(60)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)
    return sorted(out)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_workers_send_the_prefix_the_fleet_learned_from_their_first_call(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path / "cache") if backend == "sqlite" else request.getfixturevalue("redis_server").url
    first, learned_key = _learn_in_first_worker(location)
    _wait_shared(first)
    results = _fleet_first_calls(location, True, 3)
    # Every worker's first call: the clock moved out (1 fragment), the same prefix as worker 0's.
    assert [(key, moved) for _, key, moved in results] == [(learned_key, 1)] * 3
    # Without sharing, each worker keeps the clock in place on its first call: its own prefix,
    # a miss of its own, and a flip on its next call.
    alone = _fleet_first_calls(location, False, 2)
    assert all(key != learned_key and moved == 0 for _, key, moved in alone)
    first.close()


def test_workers_send_the_tool_order_the_fleet_decided(tmp_path: Path) -> None:
    # Worker 0 saw a tool set grow and appended the new tool (issue 22, decision 4); workers
    # that meet the grown set first send that order, not their own sort: one prefix per family.
    location = str(tmp_path / "cache")
    first = PromptCache(store=location, record_stats=False, clock=procs.never_now)
    first.prepare_request(procs.tools_body(["search", "book"]), format="openai-chat", tenant="acme")
    grown = ["search", "alert", "book"]
    sent = first.prepare_request(procs.tools_body(grown), format="openai-chat", tenant="acme").body["tools"]
    decided = [t["function"]["name"] for t in sent]
    assert decided == ["book", "search", "alert"]
    _wait_shared(first)
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    workers = [ctx.Process(target=procs.first_tools_call, args=(location, grown, w, q)) for w in (1, 2)]
    for w in workers:
        w.start()
    try:
        out = sorted(q.get(timeout=120) for _ in workers)
    finally:
        for w in workers:
            w.join(60)
            if w.is_alive():
                w.kill()
    assert out == [(1, decided), (2, decided)]
    first.close()


def test_shared_decisions_are_per_tenant(tmp_path: Path) -> None:
    # Another tenant's family is its own: it learns nothing from acme's.
    location = str(tmp_path / "cache")
    first, _ = _learn_in_first_worker(location)
    _wait_shared(first)
    other = PromptCache(store=location, record_stats=False, clock=procs.never_now)
    p = other.prepare_request(procs.body("2026-12-07T11:00:00Z", "hi"), format="openai-chat", tenant="globex")
    assert len(p.plan.fragments) == 0
    other.close()
    first.close()


def test_decisions_only_add_up_and_carry_no_text() -> None:
    fam = Family()
    adopt_state(fam, LearnedState(slots={"s0": LearnedSlot(changing=[(11, 1, 0, 0)], block=True)}), 2)
    mine = export_state(fam)
    assert mine.slots["s0"].changing == [(11, 1, 0, 0)] and mine.slots["s0"].block
    theirs = LearnedState(slots={"s1": LearnedSlot(lines=[(123, 1)])}, tools_canonical=True)
    both = merge_states(mine, theirs)
    assert set(both.slots) == {"s0", "s1"} and both.tools_canonical
    assert merge_states(both, mine) == both  # idempotent: nothing is undone
    # Only kinds, orders, checksums and flags: no text of the prompt.
    assert "Acme" not in both.model_dump_json()
