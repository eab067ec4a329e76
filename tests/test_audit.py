"""promptcache.lab.audit on tau-bench traces: killers found where they sit, savings per provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptcache.cli import main
from promptcache.lab.audit import audit
from promptcache.lab.traces import build_trace, write_trace

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _kinds(report: object) -> dict[tuple[str, str], int]:
    return {(f.kind, f.where): f.requests for f in report.findings}  # type: ignore[attr-defined]


def test_clean_has_no_killer_and_a_changing_clock_is_found() -> None:
    r = audit(build_trace("clean", tasks=[1]), providers=("openai",))
    # The recorded airline prompt's clock line (line 3) never changes in this
    # trace, so it kills nothing and is not reported.
    assert _kinds(r) == {}
    assert r.requests == 11 and 0.8 < r.cacheable_share < 1
    clock = _kinds(audit(build_trace("clock", tasks=[1]), providers=("openai",)))
    # A clock that changes on every call is found from its first change on (calls 2..11).
    assert clock[("volatile value in prefix: clock_line", "system, line 3")] == 10


def test_memory_tool_order_and_savings() -> None:
    r = audit(build_trace("memory", tasks=[1]), providers=("openai", "anthropic"))
    k = _kinds(r)
    assert k[("content changed before stable blocks", "messages[1] (system)")] == 10
    r2 = audit(build_trace("tool_order", tasks=[1]), providers=("anthropic",))
    k2 = _kinds(r2)
    assert sum(n for (kind, _), n in k2.items() if kind == "unstable tool order") == 10
    s = {x.provider: x for x in r.savings}
    assert s["anthropic"].savings_as_sent == 0.0  # no cache_control as sent
    assert (
        s["anthropic"].savings_promptcache > 0.5
        and s["openai"].savings_promptcache > s["openai"].savings_as_sent
    )


def test_under_minimum_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = build_trace("clean", tasks=[1])[0]
    line.body["tools"] = []
    line.body["messages"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    path = tmp_path / "log.jsonl"
    write_trace(path, [line])
    assert main(["audit", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = [(f["kind"], f["where"]) for f in report["findings"]]
    assert kinds == [("prefix under the minimum", f"{report['input_tokens']} tokens < 1024 (gpt-4o)")]
    assert [s["provider"] for s in report["savings"]] == ["openai", "anthropic", "bedrock", "gemini"]
    assert main(["audit", str(tmp_path / "nope.jsonl")]) == 2


def test_a_malformed_log_line_names_line_and_field(tmp_path: Path) -> None:
    """Run as a user would: exit 2, one line naming the file, the line and the field, no traceback."""
    import subprocess
    import sys

    from promptcache.lab.traces import build_trace, write_trace

    log = tmp_path / "requests.jsonl"
    write_trace(log, build_trace("clean", tasks=[0])[:3])
    log.write_text(log.read_text() + '{"ts": 9, "tenant": "acme", "format": "chatgpt", "body": {}}\n')
    done = subprocess.run(
        [sys.executable, "-m", "promptcache.cli", "audit", str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(
        f"promptcache audit: {log}:4: field 'format': 'chatgpt' is not a wire format"
    )
    assert "openai-chat" in done.stderr and done.stderr.count("\n") == 1
