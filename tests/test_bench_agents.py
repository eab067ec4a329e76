"""promptcache.lab.corpus and bench_agents: the agents corpus, its provenance, and consistent figures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptcache import PromptCache
from promptcache.cli import main
from promptcache.lab.bench_agents import (
    ARMS,
    PROVIDERS,
    AgentsReport,
    anthropic_with_markers,
    run_agents,
)
from promptcache.lab.bundled import REAL
from promptcache.lab.corpus import TRACES, build_corpus, fixture_paths, strip_markers

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# nanobot has a clock in the system prompt and a memory edit; smolagents nothing dynamic.
SLICE = ["nanobot", "smolagents"]


@pytest.fixture(scope="module")
def report() -> AgentsReport:
    return run_agents(SLICE)


def test_every_corpus_fixture_has_a_sources_entry() -> None:
    sources = (REAL / "SOURCES.md").read_text(encoding="utf-8")
    paths = [str(p.relative_to(REAL)) for p in fixture_paths()]
    assert len(paths) >= 15
    assert [p for p in paths if f"`{p}`" not in sources] == []


def test_every_trace_renders_and_its_dynamic_blocks_change() -> None:
    corpus = {t.name: t for t in build_corpus()}
    assert tuple(corpus) == TRACES
    for t in corpus.values():
        assert len(t.calls) >= 5, t.name
        assert [c.ts for c in t.calls] == sorted(c.ts for c in t.calls), t.name
        assert all(c.body["messages"] for c in t.calls)
    # nanobot: the minute clock and MEMORY.md sit in the system prompt and both change.
    systems = [strip_markers(c.body)["messages"][0]["content"][0]["text"] for c in corpus["nanobot"].calls]
    clocks = {s.split("## Current Time\n", 1)[1].split("\n", 1)[0] for s in systems}
    assert len(clocks) >= 3
    assert "Wants fixes as small PRs" not in systems[0] and "Wants fixes as small PRs" in systems[-1]
    # SWE-agent elides old observations in place, so the history itself is rewritten.
    last = corpus["swe_agent"].calls[-1].body["messages"]
    assert any(str(m["content"]).startswith("Old environment output: (") for m in last)
    # aider re-sends the files in the chat after the history, with their edits.
    aider = corpus["aider"].calls
    assert "# edited in request 0.0" in json.dumps(aider[1].body)
    assert "# edited in request 0.0" not in json.dumps(aider[0].body)
    # Codex: the same tools every call, the MCP ones in another order every turn.
    orders = [tuple(t["function"]["name"] for t in c.body["tools"]) for c in corpus["codex_mcp"].calls]
    assert len({frozenset(o) for o in orders}) == 1 and len(set(orders)) >= 3


def test_the_agents_own_markers_land_where_the_agent_puts_them() -> None:
    corpus = {t.name: t for t in build_corpus(["aider", "openhands", "nanobot"])}

    def marked(body: dict[str, Any]) -> list[str]:
        out = ["system" for b in body.get("system") or [] if "cache_control" in b]
        for m in body["messages"]:
            out += [f"{m['role']}:{b['type']}" for b in m["content"] if "cache_control" in b]
        return out + [f"tool:{t['name']}" for t in body.get("tools") or [] if "cache_control" in t]

    model = "claude-sonnet-4-5"
    # aider: after the examples, after the repo map, after the chat files (all assistant "Ok" replies).
    assert marked(anthropic_with_markers(corpus["aider"].calls[2].body, model)) == ["assistant:text"] * 3
    # OpenHands: the system prompt and the last tool result.
    assert marked(anthropic_with_markers(corpus["openhands"].calls[4].body, model)) == [
        "system",
        "user:tool_result",
    ]
    # nanobot: the system prompt and the last tool.
    assert marked(anthropic_with_markers(corpus["nanobot"].calls[3].body, model)) == ["system", "tool:cron"]
    body = json.dumps(anthropic_with_markers(corpus["nanobot"].calls[3].body, model), ensure_ascii=False)
    assert "\ue000" not in body


def test_the_figures_are_consistent(report: AgentsReport) -> None:
    assert [t.name for t in report.traces] == SLICE
    for t in report.traces:
        assert list(t.providers) == list(PROVIDERS)
        for p in t.providers.values():
            oracle = p.arms["oracle"]
            for name, a in p.arms.items():
                assert name in ARMS
                assert a.requests == t.calls
                assert a.cost_usd > 0 and a.uncached_cost_usd > 0
                assert 0.0 <= a.cached_fraction <= 1.0
                # The oracle is an upper bound on every arm (0.2 points of slack: the arms' bodies
                # are not the as-sent ones, and Claude token counts are estimates).
                assert oracle.cached_fraction + 0.002 >= a.cached_fraction, (t.name, p.provider, name)
            # Markers and LangChain's middleware exist on Anthropic only.
            assert ("langchain_middleware" in p.arms) == (p.provider == "anthropic")
            assert ("own_markers" in p.arms) == (p.provider == "anthropic" and t.own_markers is not None)
            if p.provider == "anthropic":
                assert p.arms["as_sent"].cached_read_tokens == 0  # no marker, nothing cached
                assert p.arms["as_sent"].cost_ratio == 1.0


def test_a_clock_in_the_prefix_costs_the_app_and_promptcache_wins_it_back(report: AgentsReport) -> None:
    nanobot = next(t for t in report.traces if t.name == "nanobot")
    for provider in ("openai", "openai_explicit"):
        arms = nanobot.providers[provider].arms
        assert arms["as_sent"].cached_fraction < arms["promptcache"].cached_fraction
        assert arms["promptcache"].cost_usd < arms["as_sent"].cost_usd
    anthropic = nanobot.providers["anthropic"].arms
    assert anthropic["own_markers"].cached_fraction < anthropic["promptcache"].cached_fraction


def test_a_tool_list_reshuffled_every_turn_costs_no_miss() -> None:
    # Codex re-lists its MCP tools in another order every turn: tools in canonical order from the
    # first call (issue 22, decision 4) send one tool list, so only the first call misses.
    codex = run_agents(["codex_mcp"], ["openai", "anthropic"])
    assert codex.losses() == []
    for p in codex.traces[0].providers.values():
        best = max(a.cached_fraction for n, a in p.arms.items() if n not in ("promptcache", "oracle"))
        assert p.arms["promptcache"].cached_fraction > best + 0.15, p.provider
        assert p.ratio_to_oracle("promptcache") >= 0.98, p.provider
    # The example dates in the git server's schemas are static look-alikes: never moved.
    cache = PromptCache()
    for call in build_corpus(["codex_mcp"])[0].calls:
        out = cache.prepare_request(call.body, format="openai-chat", tenant=call.tenant)
        assert out.plan.fragments == [] and "2024-01-15T14:30:25" in json.dumps(out.body["tools"])


def test_losses_are_listed_against_each_baseline(report: AgentsReport) -> None:
    losses = report.losses()
    assert all(x.split("/")[0] in SLICE for x in losses)
    for line in losses:
        assert any(arm in line for arm in ("as_sent", "own_markers", "langchain_middleware"))


def test_cli_prints_json_and_writes_the_report(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agents.json"
    args = ["bench", "agents", "--trace", "smolagents", "--provider", "openai", "--no-progress"]
    assert main([*args, "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    arms = printed["traces"][0]["providers"]["openai"]["arms"]
    assert list(arms) == ["as_sent", "promptcache", "oracle"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| smolagents | openai |" in table
