"""docs/guides/request-log.md: its snippet writes a log the commands read; it states the format exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from promptcache.formats import WireFormat
from promptcache.lab.traces import TraceLine

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "request-log.md"
MARKED = re.compile(r"<!--\s*test\s*-->\s*\n```python\n(.*?)\n```", re.DOTALL)
CLI = [sys.executable, "-m", "promptcache.cli"]


def test_the_snippet_writes_a_log_audit_and_replay_read(tmp_path: Path) -> None:
    (code,) = MARKED.findall(PAGE.read_text())
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "2 requests logged"
    log = tmp_path / "requests.jsonl"
    audit = subprocess.run([*CLI, "audit", str(log), "--json"], capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["requests"] == 2
    assert any(f["kind"].startswith("volatile value in prefix") for f in report["findings"]), report[
        "findings"
    ]
    replay = subprocess.run([*CLI, "replay", str(log), "--json"], capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["summary"]["requests"] == 2


def test_the_page_states_the_format_the_code_reads() -> None:
    text = PAGE.read_text()
    table = re.findall(r"^\| `(\w+)` \| (\w+) \|", text, re.MULTILINE)
    assert [name for name, _ in table] == list(TraceLine.model_fields)
    assert "no others" in text  # TraceLine forbids extra fields
    for fmt in WireFormat:
        assert f"`{fmt.value}`" in text
    (example,) = re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)
    TraceLine.model_validate_json(example)
