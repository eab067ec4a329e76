"""promptcache.lab.bench: the hit-rate arms on real tau-bench traces, and the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from promptcache.cli import main
from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.bench import langchain_middleware_body, oracle_usage, run_hitrate
from promptcache.lab.convert import convert
from promptcache.lab.simulate import Simulator
from promptcache.lab.traces import build_trace, write_trace

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
FIELDS = [
    "cache_write_tokens",
    "cached_fraction",
    "cached_read_tokens",
    "cost_usd",
    "input_tokens",
    "requests",
]


def test_arms_match_direct_simulation() -> None:
    lines = build_trace("combined", tasks=[1])
    r = run_hitrate(lines, "openai")
    assert list(r.arms) == ["as_sent", "promptcache", "oracle"]
    sim, sim_pc, pc = Simulator(provider="openai"), Simulator(provider="openai"), PromptCache()
    read = read_pc = inp = 0
    for x in lines:
        u = sim.feed(x.ts, x.format, x.body, org=x.tenant).usage
        body = pc.prepare_request(x.body, format=x.format, model="gpt-4o", tenant=x.tenant).body
        read_pc += sim_pc.feed(x.ts, x.format, body, org=x.tenant).usage.cache_read_tokens
        read += u.cache_read_tokens
        inp += u.input_tokens
    a = r.arms["as_sent"]
    assert (a.requests, a.input_tokens, a.cached_read_tokens, a.cache_write_tokens) == (11, inp, read, 0)
    assert r.arms["promptcache"].cached_read_tokens == read_pc
    assert r.arms["oracle"].input_tokens == inp
    # Everything changes in the combined scenario: nothing is cached as sent. promptcache
    # learns the per-call values over its first calls, so on one short conversation it
    # stays below the oracle (the full trace is checked below and in the benchmark).
    assert read == 0 and 0.6 < r.arms["promptcache"].cached_fraction < r.arms["oracle"].cached_fraction
    assert r.arms["as_sent"].cost_usd > r.arms["promptcache"].cost_usd > r.arms["oracle"].cost_usd


def test_oracle_by_hand() -> None:
    sys_a = "line one\nline two\n"
    b1 = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": sys_a}, {"role": "user", "content": "hi"}],
    }
    b2 = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "line zero\n" + sys_a}, {"role": "user", "content": "hi"}],
    }
    f = WireFormat.OPENAI_CHAT
    u1, u2, u3, u4 = oracle_usage(
        [(0.0, "t", f, b1), (10.0, "t", f, b2), (10.0, "u", f, b1), (400.0, "t", f, b1)]
    )
    assert u1.cache_read_tokens == 0
    # Everything but "line zero\n" was sent before (3 headers + 2 + "hi" + 2 closes ...); the
    # reply-priming tail (3 tokens) is never content that was sent.
    assert u2.cache_read_tokens == u2.input_tokens - 3 - 3
    assert u3.cache_read_tokens == 0  # another tenant
    assert u4.cache_read_tokens == 0  # 390 s later: past the 300 s TTL


def test_langchain_middleware_body_is_what_the_agent_sends() -> None:
    line = build_trace("memory", tasks=[1])[3]
    anth = convert(line.body, "openai-chat", "anthropic-messages")
    out: dict[str, Any] = langchain_middleware_body(anth, WireFormat.ANTHROPIC_MESSAGES, "claude-sonnet-4-5")
    marker = {"type": "ephemeral", "ttl": "5m"}
    assert out["cache_control"] == marker  # top-level: Anthropic's automatic breakpoint on the last block
    assert out["tools"][-1]["cache_control"] == marker
    assert all("cache_control" not in t for t in out["tools"][:-1])
    # The middleware tags the agent's system message; the spliced memory message comes after it.
    assert (
        out["system"][0]["cache_control"] == marker and out["system"][0]["text"] == anth["system"][0]["text"]
    )
    assert out["system"][1] == {"type": "text", "text": anth["system"][1]["text"]}
    assert [m["role"] for m in out["messages"]] == [m["role"] for m in anth["messages"]]


def test_anthropic_arms_and_targets_on_the_full_trace() -> None:
    for scenario in ("clock", "combined"):
        r = run_hitrate(build_trace(scenario), "anthropic")
        assert list(r.arms) == ["as_sent", "promptcache", "langchain_middleware", "oracle"]
        assert r.arms["as_sent"].cached_read_tokens == 0  # no cache_control: Anthropic caches nothing
        pc, lc = r.arms["promptcache"], r.arms["langchain_middleware"]
        assert pc.cached_fraction >= lc.cached_fraction and r.ratio_to_oracle("promptcache") >= 0.95
        assert pc.cache_write_tokens > 0


def test_cli_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace.jsonl"
    write_trace(path, build_trace("tool_order", tasks=[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["bench", "hitrate", str(path), "--provider", "gemini", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (
        report["provider"] == "gemini" and report["model"] == "gemini-2.5-flash" and report["requests"] == 11
    )
    assert list(report["arms"]) == ["as_sent", "promptcache", "oracle"]
    assert all(sorted(a) == FIELDS for a in report["arms"].values())
    assert main(["bench", "hitrate", str(path), "--provider", "bedrock"]) == 0
    text = capsys.readouterr().out
    assert (
        text.splitlines()[0]
        == "bedrock · anthropic.claude-sonnet-4-5-20250929-v1:0 · bedrock-converse · 11 requests"
    )
    assert main(["bench", "hitrate", str(tmp_path / "missing.jsonl"), "--provider", "openai"]) == 2
