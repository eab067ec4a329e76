"""benchmarks.bench_overhead: how the rounds of several processes are pooled into one figure."""

from __future__ import annotations

from typing import Any

from benchmarks.bench_overhead import TARGET, _summarize

ARMS = (
    "plain",
    "caching_chat_model",
    "plain_agent_loop",
    "caching_chat_model_agent_loop",
    "agent",
    "agent_middleware",
    "agent_noop_middleware",
)


def _part(plain: int, added: int, rounds: int) -> dict[str, Any]:
    """One process's samples (ns): every promptcache arm ``added`` over its plain arm."""
    base = {"plain": plain, "plain_agent_loop": plain, "agent": plain, "agent_noop_middleware": plain}
    ours = {"caching_chat_model": plain + added, "caching_chat_model_agent_loop": plain + added}
    ours["agent_middleware"] = plain + added
    values = base | ours
    samples = {arm: [values[arm] + i for i in range(rounds)] for arm in ARMS}
    return {"request": {"bytes": 1}, "samples": samples, "cpu": samples, "hit": [1] * rounds, "profiles": {}}


def test_rounds_of_every_process_are_pooled_and_each_process_is_reported() -> None:
    # One process adds 5 %, the other 15 %: neither alone is the fleet's figure.
    out = _summarize([_part(1_000_000, 50_000, 30), _part(1_000_000, 150_000, 31)], cold=True)
    assert out["n"] == 61 and out["processes"] == 2
    per = out["per_process_paired_overhead_ratio"]
    assert [p["caching_chat_model"] for p in per] == [0.05, 0.15]
    assert [p["agent_middleware"] for p in per] == [0.05, 0.15]
    # The pooled median lies with the process that gave more rounds.
    assert out["paired_overhead_ratio"]["caching_chat_model"] == 0.15
    assert out["target_met"] is (out["overhead_ratio"]["caching_chat_model"] <= TARGET)


def test_one_process_reports_no_per_process_figures() -> None:
    out = _summarize([_part(1_000_000, 50_000, 20)], cold=True)
    assert out["processes"] == 1 and "per_process_paired_overhead_ratio" not in out
    assert out["paired_overhead_ratio"] == {"caching_chat_model": 0.05, "agent_middleware": 0.05}
    assert out["target_met"] is True
