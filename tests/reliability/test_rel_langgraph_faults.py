"""Redis killed and restarted mid-way through a 2-worker LangGraph run: no failed agent run, no corrupt read.

A small version of the report's ``faults.redis_langgraph`` (``benchmarks/reliability_langgraph.py``):
two OS processes run real ``StateGraph`` agents (``CachingChatModel(ChatOpenAI)`` against the
provider emulator, ``cached_tool_node`` over the airline tools) on one loopback Redis, which is
SIGKILLed and restarted once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability_infra import REDIS_SERVER
from benchmarks.reliability_langgraph import faults_redis_langgraph, seal, sealed_ok

from . import _path  # noqa: F401


def test_seal_catches_a_changed_byte_and_a_foreign_tenant() -> None:
    good = seal({"reservation_id": "R1", "tenant": "acme", "total_baggages": 1})
    assert sealed_ok(good, "acme", "R1")
    assert not sealed_ok(good.replace('"total_baggages": 1', '"total_baggages": 2'), "acme", "R1")
    assert not sealed_ok(good, "globex", "R1") and not sealed_ok(good, "acme", "R2")
    assert not sealed_ok("not json", "acme", "R1") and not sealed_ok(None, "acme", "R1")


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (make redis-server)")
def test_redis_kill_and_restart_mid_langgraph_run(tmp_path: Path) -> None:
    pytest.importorskip("langgraph", reason="the LangGraph integration is not installed")
    pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    figs = faults_redis_langgraph(
        tmp_path, quick=True, workers=2, faults=("redis_killed_then_restarted",), fault_s=1.5, gap_s=5.0
    )
    assert figs["agent_runs"] >= 4 and figs["tool_calls"] >= 4 * figs["agent_runs"]
    assert figs["failed_agent_runs"] == 0 and figs["failed_calls"] == 0, figs["failed_by_error"]
    assert figs["corrupted_reads"] == 0
    assert figs["read_back"]["read_back_corrupted"] == 0
    assert figs["written_during_fault"]["served_reads_of_those_corrupted"] == 0
    kill = figs["faults"]["redis_killed_then_restarted"]
    assert kill["agent_runs"] > 0  # agents really ran while Redis was down
    assert kill["recovered_all_workers"], kill["recovery_s_per_worker"]  # L2 hits again after the restart
    assert figs["counters_sum"].get("l2_tier_skipped", 0) > 0  # and the L2 tier was really skipped
    assert figs["passed"], figs
