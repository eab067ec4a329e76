"""``promptcache demo --json``, the main job: the agent demo reads from cache with promptcache and
beats the same agent without it, on ChatOpenAI and on ChatAnthropic; the core simulation stays
reachable with ``--core``."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from promptcache import cli

pytest.importorskip("promptcache.lab.emulate")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    # Module-scoped (the demo runs once for all tests here), so stdout is captured by hand.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["demo", "--json"]) == 0
    out: dict[str, Any] = json.loads(buf.getvalue())
    return out


def test_agent_demo_is_the_default(report: dict[str, Any]) -> None:
    assert report["demo"] == "agent"
    assert set(report["providers"]) == {"openai", "anthropic"}
    assert report["seconds"] < 60


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_with_promptcache_reads_from_cache_and_beats_without(report: dict[str, Any], provider: str) -> None:
    p = report["providers"][provider]
    without, with_ = p["without"], p["with"]
    # The same recorded conversation was replayed in both arms, to its recorded last answer.
    assert without["last_answer_is_recorded"] and with_["last_answer_is_recorded"]
    assert without["totals"]["calls"] == with_["totals"]["calls"] >= 8
    # The cache killers (moving clock, shuffled tools) leave the agent as written nothing to read.
    assert without["totals"]["cache_read_tokens"] < with_["totals"]["cache_read_tokens"]
    assert with_["totals"]["cached_share"] > 0.5
    assert with_["totals"]["cost_usd"] < without["totals"]["cost_usd"] and p["cost_avoided_usd"] > 0
    # Every later call reads most of its prompt from the provider cache.
    assert all(c["cached_share"] > 0.5 for c in with_["calls"][2:])
    # The explanations name both killers and say they were neutralized.
    explain = with_["calls"][2]["explain"]
    assert "neutralized" in explain and "system" in explain and "tool" in explain
    # The figures are where the report says they are, and agree with the emulator's usage.
    metrics = with_['state["cache_metrics"]']
    assert metrics["calls"] == with_["totals"]["calls"]
    assert metrics["cache_read_tokens"] == with_["totals"]["cache_read_tokens"]
    assert with_["cache.stats()"]["cache_read_tokens"] == with_["totals"]["cache_read_tokens"]
    assert with_['response_metadata["promptcache"]']["tenant"] == report["tenant"]


def test_core_demo_still_reachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--core", "--provider", "openai", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["demo"] == "core" and out["reports"][0]["provider"] == "openai"
