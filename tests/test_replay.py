"""Golden replay: no content lost on the real cassettes and tau-bench traces; a lossy rewrite fails."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from promptcache.cli import main
from promptcache.engine import PromptCache
from promptcache.formats import WireFormat
from promptcache.lab.bundled import CASSETTES
from promptcache.lab.replay import Source, compare_bodies, load_requests, replay
from promptcache.lab.traces import SCENARIOS, build_trace, write_trace

ALL_CASSETTES = sorted(CASSETTES.glob("*.yaml"))


def test_the_bundled_cassettes_are_there() -> None:
    assert len(ALL_CASSETTES) >= 15


@pytest.mark.parametrize("path", ALL_CASSETTES, ids=lambda p: p.stem)
def test_every_bundled_cassette_replays_without_loss(path: Path) -> None:
    report = replay(load_requests([path]))
    assert report.requests, "no model call replayed"
    assert report.ok, [(r.index, r.lost) for r in report.requests if r.lost]
    assert all(r.kept >= 4 for r in report.requests)  # contents, roles and parameters compared


def test_gemini_cache_management_calls_are_skipped_not_compared() -> None:
    report = replay(load_requests([CASSETTES / "gemini__pydantic_ai__cached_content.yaml"]))
    assert [s.why.split(" (")[0] for s in report.skipped] == ["not a model call"] * 2
    assert {r.format for r in report.requests} == {WireFormat.GEMINI}


@pytest.mark.parametrize("fmt", list(WireFormat), ids=lambda f: f.value)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tau_bench_traces_lose_nothing(tmp_path: Path, scenario: str, fmt: WireFormat) -> None:
    path = tmp_path / "trace.jsonl"
    write_trace(path, build_trace(scenario, format=fmt, tasks=[0, 1]))  # type: ignore[arg-type]
    report = replay(load_requests([path]))
    assert len(report.requests) > 10
    assert report.ok, [(r.index, r.lost[:2]) for r in report.requests if r.lost][:3]
    moved = report.summary()["moved"]
    if scenario in ("clock", "call_ids", "memory", "combined"):
        # The cache killers really were relocated: the check saw content move, not stay put.
        assert moved > 0
    else:
        assert moved == 0


def _trace(tmp_path: Path, scenario: str = "combined") -> Path:
    path = tmp_path / "trace.jsonl"
    write_trace(path, build_trace(scenario, tasks=[0]))  # type: ignore[arg-type]
    return path


def test_a_rewrite_that_drops_a_relocated_line_is_caught(tmp_path: Path) -> None:
    def lossy(cache: PromptCache, src: Source) -> dict[str, Any]:
        assert src.body is not None and src.format is not None
        body = cache.prepare_request(src.body, format=src.format, tenant=src.tenant).body
        for m in body["messages"]:
            c = m.get("content")
            if isinstance(c, str) and c.startswith("<volatile_context>") and "Request ID" in c:
                # Drop the relocated request-id line: the kind of bug golden replay exists for.
                m["content"] = "\n".join(x for x in c.split("\n") if "Request ID" not in x)
        return body

    report = replay(load_requests([_trace(tmp_path)]), rewrite=lossy)
    assert not report.ok
    bad = [r for r in report.requests if r.lost]
    assert len(bad) >= len(report.requests) - 2  # the id moves from the second call on
    loss = bad[0].lost[0]
    assert loss.kind == "line" and loss.where == "messages" and loss.excerpt.startswith("Request ID: req_")


def test_each_kind_of_loss_is_named() -> None:
    original = {
        "model": "gpt-4o",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You help.\nBe brief."},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"required": ["a"]}}}],
    }
    assert compare_bodies(original, copy.deepcopy(original)).ok

    def lost(mutate: Any) -> list[tuple[str, str, str]]:
        b = copy.deepcopy(original)
        mutate(b)
        return [(x.kind, x.where, x.excerpt) for x in compare_bodies(original, b).lost]

    assert lost(lambda b: b["messages"][0].update(content="You help.")) == [("line", "messages", "Be brief.")]
    assert lost(lambda b: b["tools"][0]["function"]["parameters"].pop("required")) == [
        ("key", "tools", "required"),
        ("line", "tools", "a"),
    ]
    assert lost(lambda b: b.update(temperature=0.7)) == [("scalar", "temperature", "0.2")]
    assert lost(lambda b: b["messages"][2]["tool_calls"][0]["function"].update(arguments='{"a": 2}')) == [
        ("line", "messages", '{"a": 1}')
    ]
    # A user turn turned into an instruction is a loss (only system/developer are one role).
    assert lost(lambda b: b["messages"][1].update(role="system")) == [("line", "messages", "user")]
    # A duplicate of another message does not cover a dropped one.
    assert lost(lambda b: b["messages"].__setitem__(1, dict(b["messages"][0]))) != []


def test_normalization_is_allowed_and_reported_hints_set_aside() -> None:
    original = {"model": "claude-sonnet-4-5", "system": "cafe\u0301\r\nok", "messages": [], "max_tokens": 5}
    rewritten: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "café\nok", "cache_control": {"type": "ephemeral"}}],
        "messages": [],
        "max_tokens": 5,
    }
    d = compare_bodies(original, rewritten, format=WireFormat.ANTHROPIC_MESSAGES)
    assert d.ok and d.normalized == 1 and d.hints_after == ["$.system[0].cache_control"]
    # Only NFC/newlines: trailing whitespace removed is a loss, not a normalization.
    rewritten["system"][0]["text"] = "café\nok "
    assert not compare_bodies(original, rewritten).ok


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _trace(tmp_path, "clock")
    assert main(["replay", str(path), str(ALL_CASSETTES[0]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["ok"] is True and out["summary"]["requests"] > 10

    # An unreadable log is a usage error (2), distinct from a loss (1, below).
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert main(["replay", str(bad)]) == 2
    capsys.readouterr()


def test_cli_exit_code_1_on_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import promptcache.lab.replay as mod

    engine = mod._prepare

    def dropping(cache: PromptCache, src: Source) -> dict[str, Any]:
        body = engine(cache, src)
        body["messages"] = body["messages"][:-1]  # the current user turn never reaches the model
        return body

    monkeypatch.setattr(mod, "_prepare", dropping)
    assert main(["replay", str(_trace(tmp_path, "clean"))]) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("interactions: [\n  - {request: \n", "bad.yaml: not YAML at line"),
        ("just: a mapping\ninteractions: 3\n", "bad.yaml: no 'interactions' list"),
        ("interactions:\n  - response: {}\n", "bad.yaml: interaction 0: field 'request' is missing"),
    ],
)
def test_a_bad_cassette_is_named(tmp_path: Path, content: str, message: str, capsys: Any) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    assert main(["replay", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptcache replay: ") and message in err and err.count("\n") == 1


def test_a_bad_log_line_is_named(tmp_path: Path, capsys: Any) -> None:
    log = tmp_path / "log.jsonl"
    write_trace(log, build_trace("clean", tasks=[0])[:2])
    log.write_text(log.read_text() + '{"ts": 3, "tenant": "a", "body": {}}\n')
    assert main(["replay", str(log)]) == 2
    assert f"{log}:3: field 'format' is missing" in capsys.readouterr().err
