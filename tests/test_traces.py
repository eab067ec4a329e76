"""promptcache.lab.traces: scenario traces from the real tau-bench trajectories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest

from promptcache.lab.emulate import Emulator
from promptcache.lab.traces import (
    AGENTS,
    TraceError,
    TraceLine,
    build_trace,
    load_trajectories,
    read_trace,
    script_from_trajectory,
    trace_digest,
    write_trace,
)

TRAJS = load_trajectories()
AIRLINE_PROMPT = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()
RETAIL_PROMPT = (AGENTS / "tau_bench_retail_system_prompt.md").read_text()
AIRLINE_TOOLS = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
N_CALLS = sum(1 for t in TRAJS for m in t["traj"] if m["role"] == "assistant")


def _tool_names(line: TraceLine) -> list[str]:
    return [t["function"]["name"] for t in line.body["tools"]]


def test_clean_is_the_recording() -> None:
    lines = build_trace("clean")
    assert len(TRAJS) == 5 and len(lines) == N_CALLS == 84
    assert [x.ts for x in lines] == sorted(x.ts for x in lines)
    assert {x.tenant for x in lines} == {"tau-airline"} and {x.format.value for x in lines} == {"openai-chat"}
    for x in lines:
        assert x.body["messages"][0] == {"role": "system", "content": AIRLINE_PROMPT}
        assert x.body["tools"] == AIRLINE_TOOLS
        assert x.body["messages"][-1]["role"] in ("user", "tool")
    # Each call's history is a prefix of the recorded conversation.
    first = [x for x in lines if x.body["messages"][1:] == TRAJS[0]["traj"][1:2]]
    assert len(first) == 1
    histories = {json.dumps(x.body["messages"][1:]) for x in lines}
    assert len(histories) == N_CALLS


def test_clock_changes_only_the_time_line() -> None:
    lines = build_trace("clock")
    systems = [x.body["messages"][0]["content"] for x in lines]
    # Second resolution: concurrent conversations in the same second share a clock line.
    assert len(set(systems)) == len({int(x.ts) for x in lines}) > 75
    for s in systems:
        assert re.sub(r"The current time is .*", "", s) == re.sub(
            r"The current time is .*", "", AIRLINE_PROMPT
        )
    retail = build_trace("clock", domain="retail", tasks=[1])
    rs = retail[0].body["messages"][0]["content"]
    assert "The current time is 2024-05-15" not in RETAIL_PROMPT
    head, rest = RETAIL_PROMPT.split("\n\n", 1)
    assert re.fullmatch(
        re.escape(head) + r"\n\nThe current time is 2024-05-15 15:\d\d:\d\d EST\.\n\n" + re.escape(rest), rs
    )


def test_tool_order_call_ids_memory_combined() -> None:
    shuffled = build_trace("tool_order")
    orders = [tuple(_tool_names(x)) for x in shuffled]
    assert len(set(orders)) > 70 and all(sorted(o) == sorted(orders[0]) for o in orders)
    ids = [
        re.search(r"Request ID: (req_[0-9a-f]{24})", x.body["messages"][0]["content"])
        for x in build_trace("call_ids")
    ]
    assert all(ids) and len({m.group(1) for m in ids if m}) == N_CALLS
    mem = build_trace("memory")
    second = [x.body["messages"][1] for x in mem]
    assert all(m["role"] == "system" and m["content"].startswith("Relevant memory: ") for m in second)
    assert len({m["content"] for m in second}) == N_CALLS
    assert all(x.body["messages"][0]["content"] == AIRLINE_PROMPT for x in mem)
    combined = build_trace("combined")
    c0 = combined[0].body
    assert "Request ID: req_" in c0["messages"][0]["content"]
    assert c0["messages"][1]["content"].startswith("Relevant memory: ")
    assert c0["messages"][0]["content"] != AIRLINE_PROMPT
    assert len({tuple(_tool_names(x)) for x in combined}) > 70


def test_deterministic_formats_and_domains() -> None:
    assert trace_digest(build_trace("combined", tasks=[1])) == trace_digest(
        build_trace("combined", tasks=[1])
    )
    assert trace_digest(build_trace("combined", tasks=[1], seed=8)) != trace_digest(
        build_trace("combined", tasks=[1])
    )
    anth = build_trace("clean", tasks=[1], format="anthropic-messages")
    assert anth[0].format.value == "anthropic-messages" and anth[0].body["system"] == AIRLINE_PROMPT
    retail = build_trace("clean", domain="retail", tasks=[1])
    assert retail[0].body["messages"][0]["content"] == RETAIL_PROMPT and retail[0].tenant == "tau-retail"
    assert _tool_names(retail[0])[0] != _tool_names(anth and build_trace("clean", tasks=[1])[0])[0]
    with pytest.raises(ValueError, match="scenario='noisy'"):
        build_trace("noisy")  # type: ignore[arg-type]


def test_write_read_round_trip(tmp_path: Path) -> None:
    lines = build_trace("memory", tasks=[1])
    path = tmp_path / "t.jsonl"
    assert write_trace(path, lines) == len(lines) == 11
    assert read_trace(path) == lines
    first = json.loads(path.read_text().splitlines()[0])
    assert sorted(first) == ["body", "format", "tenant", "ts"]
    path.write_text(path.read_text() + "\n{not json}\n")
    with pytest.raises(ValueError, match=r"t.jsonl:13: not JSON \(Expecting property name"):
        read_trace(path)


GOOD = '{"ts": 1.5, "tenant": "acme", "format": "openai-chat", "body": {"model": "gpt-4o", "messages": []}}'


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (
            '{"ts": 1, "tenant": "a", "format": "openai-chat"',
            None,
            "not JSON (Expecting ',' delimiter at column",
        ),
        ("[1, 2]", None, "a JSON list, not an object"),
        ('{"model": "gpt-4o", "messages": []}', None, "a bare request body without its envelope"),
        ('{"ts": 1, "format": "openai-chat", "body": {}}', "tenant", "field 'tenant' is missing"),
        (
            '{"ts": 1, "tenant": "a", "format": "openai", "body": {}}',
            "format",
            "'openai' is not a wire format",
        ),
        ('{"ts": "noon", "tenant": "a", "format": "gemini", "body": {}}', "ts", "a number of seconds"),
        ('{"ts": 1, "tenant": "a", "format": "gemini", "body": "hi"}', "body", "a JSON object"),
        (
            '{"ts": 1, "tenant": "a", "format": "gemini", "body": {}, "user": "x"}',
            "user",
            "not part of a trace line",
        ),
    ],
)
def test_a_bad_line_is_named_with_its_field(
    tmp_path: Path, bad: str, field: str | None, message: str
) -> None:
    """Malformed JSON, an unknown format and a missing envelope each get their own message."""
    path = tmp_path / "log.jsonl"
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n")
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    err = caught.value
    assert (err.line, err.field) == (3, field)
    assert str(err).startswith(f"{path}:3: ") and message in str(err)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope.jsonl: no such file"):
        read_trace(tmp_path / "nope.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match=r"bin.jsonl: not UTF-8 text"):
        read_trace(tmp_path / "bin.jsonl")


def test_trajectory_replays_through_the_emulator() -> None:
    """The recorded agent turns as the emulator's script: the SDK gets the recorded tool calls back."""
    traj = TRAJS[1]["traj"]
    script = script_from_trajectory(traj)
    recorded = [m for m in traj if m["role"] == "assistant"]
    assert len(script) == len(recorded) == 11
    lines = build_trace("clean", tasks=[1])
    with Emulator(script=script, clock=lambda: 0.0) as emu:
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key="k", max_retries=0)
        for line, rec in zip(lines, recorded, strict=True):
            r = client.chat.completions.create(**line.body)
            msg = r.choices[0].message
            if rec.get("tool_calls"):
                assert msg.tool_calls is not None
                got = [(c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls]  # type: ignore[union-attr]
                want = [
                    (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in rec["tool_calls"]
                ]
                assert got == want
            else:
                assert msg.content == rec["content"]
        hits = [u.cache_read_tokens for u in emu.usages if u]
    assert hits[0] == 0 and all(h >= 3072 for h in hits[1:])
