"""``promptcache report``: every input kind gives charts, the page is self-contained, no prompt text
leaks, and the page renders in headless Chromium (skipped, with the reason, where Chromium is absent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="promptcache report draws with matplotlib (dev extra)")

import numpy as np
from matplotlib.image import imread

from promptcache.cli import main
from promptcache.lab.audit import audit
from promptcache.lab.bench import run_hitrate
from promptcache.lab.report import load_sections, render_html, write_report
from promptcache.lab.traces import build_trace, write_trace
from promptcache.metrics import CacheMetrics, merge_cache_metrics
from promptcache.stats import StatsRecorder
from promptcache.usage import CacheUsage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of each input kind, from a small real trace (two tau-bench conversations, all killers)."""
    d = tmp_path_factory.mktemp("inputs")
    lines = build_trace("combined", tasks=[0, 1])
    write_trace(d / "trace.jsonl", lines)
    hit = run_hitrate(lines, "anthropic")
    (d / "hitrate.json").write_text(json.dumps(hit.model_dump(mode="json")))
    (d / "audit.json").write_text(
        json.dumps(audit(lines, providers=("openai", "anthropic")).model_dump(mode="json"))
    )
    scenarios = {
        f"airline/{sc}/openai": {
            "arms": {k: v.model_dump() for k, v in run_hitrate(tr, "openai").arms.items()}
        }
        for sc, tr in (("clean", build_trace("clean", tasks=[0])), ("clock", build_trace("clock", tasks=[0])))
    }
    make_bench = {
        "python": "3.11",
        "results": {
            "bench_hitrate": {"scenarios": scenarios, "targets_missed": [], "all_targets_met": True},
            "bench_core": {"cold_ratio": 1.1, "warm_ratio": 0.2, "request": {"tokens_o200k": 1}},
        },
    }
    (d / "make_bench.json").write_text(json.dumps(make_bench))
    metrics = CacheMetrics()
    rec = StatsRecorder()
    for i, (inp, read) in enumerate([(3000, 0), (3100, 2900), (3300, 3000), (3400, 0), (3500, 3300)]):
        u = CacheUsage(
            provider="openai", model="gpt-4o", input_tokens=inp, cache_read_tokens=read, output_tokens=50
        )
        metrics = merge_cache_metrics(metrics, CacheMetrics.from_usage(u, call_id=f"run-{i}", tenant="acme"))
        rec.record("acme" if i % 2 else "globex", u)
    (d / "metrics.json").write_text(json.dumps(metrics.model_dump(mode="json")))
    (d / "stats.json").write_text(rec.snapshot().model_dump_json())
    return {p.stem: p for p in d.iterdir()}


def _png_ok(data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("kind", "slugs"),
    [
        ("hitrate", {"arms-cached-share", "arms-cost"}),
        ("audit", {"miss-reasons", "cost-per-provider"}),
        ("make_bench", {"scenarios-openai"}),
        ("metrics", {"share-per-call", "cumulative-cost"}),
        ("stats", {"cost-per-tenant"}),
        ("trace", {"share-per-call", "cumulative-cost", "miss-reasons"}),
    ],
)
def test_each_input_kind_gives_its_charts(inputs: dict[str, Path], kind: str, slugs: set[str]) -> None:
    sections = load_sections(inputs[kind])
    got = {c.slug for s in sections for c in s.charts}
    assert slugs <= got
    for s in sections:
        assert s.kpis or s.tables, "every section shows figures, not only pictures"
        for c in s.charts:
            _png_ok(c.png)


def test_figures_match_the_inputs(inputs: dict[str, Path]) -> None:
    hit = json.loads(inputs["hitrate"].read_text())
    (s,) = load_sections(inputs["hitrate"])
    kpis = dict(s.kpis)
    assert kpis["cached with promptcache"] == f"{hit['arms']['promptcache']['cached_fraction']:.1%}"
    assert kpis["requests"] == str(hit["requests"])
    (m,) = load_sections(inputs["metrics"])
    metrics = CacheMetrics.model_validate(json.loads(inputs["metrics"].read_text()))
    assert dict(m.kpis)["model calls"] == "5"
    assert dict(m.kpis)["cached share"] == f"{metrics.hit_rate:.1%}"
    # The audit table has one row per finding, with its request count.
    aud = json.loads(inputs["audit"].read_text())
    (a,) = load_sections(inputs["audit"])
    killers = a.tables[-1]
    assert [r[2] for r in killers.rows] == [str(f["requests"]) for f in aud["findings"]]


def test_trace_arms_agree_with_bench_totals(inputs: dict[str, Path]) -> None:
    """The per-call simulation in the report is the same simulation ``bench hitrate`` totals."""
    from promptcache.lab.traces import read_trace

    lines = read_trace(inputs["trace"])
    hit = run_hitrate(lines, "openai", arms=("as_sent", "promptcache"))
    (s,) = load_sections(inputs["trace"], provider="openai")
    kpis = dict(s.kpis)
    assert kpis["cached with promptcache"] == f"{hit.arms['promptcache'].cached_fraction:.1%}"
    assert kpis["cached as sent"] == f"{hit.arms['as_sent'].cached_fraction:.1%}"


def test_cli_writes_one_self_contained_page_and_the_pngs(
    inputs: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "report"
    args = [str(inputs[k]) for k in ("hitrate", "audit", "make_bench", "metrics", "stats", "trace")]
    assert main(["report", *args, "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    page = Path(written["html"]).read_text()
    pngs = [Path(p) for p in written["charts"]]
    assert len(pngs) >= 11 and all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
    # Self-contained: every image inline, nothing fetched (no external src/href, no stylesheet link).
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<link" not in page and "<script" not in page
    assert "<style>" in page


def test_no_prompt_text_in_the_page(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Reports carry figures, kinds and positions, never the prompt: no system-prompt line shows up."""
    from promptcache.lab.traces import read_trace

    written = write_report([inputs["trace"], inputs["audit"]], tmp_path)
    page = Path(written["html"]).read_text()
    body = read_trace(inputs["trace"])[0].body
    prompt_lines = [ln.strip() for ln in body["messages"][0]["content"].splitlines() if len(ln.strip()) > 25]
    assert len(prompt_lines) > 10
    leaked = [ln for ln in prompt_lines if ln[:40] in page]
    assert not leaked
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    assert user[:30] not in page


def test_html_escapes_what_it_shows() -> None:
    from promptcache.lab.report import Section, Table

    page = render_html([Section(title="<b>x</b>", source="a&b", tables=[Table(["h"], [["<script>"]])])])
    assert "<b>x</b>" not in page and "&lt;script&gt;" in page and "a&amp;b" in page


def test_bad_inputs_exit_2(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    assert main(["report", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]) == 2
    assert "x.json: a JSON object with none of the shapes a report reads" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.json", "[1, 2]", "list.json: a JSON list, not an object; give the --json output of"),
        ("audit.json", '{"findings": [], "savings": []}', "audit.json: field 'requests' is missing"),
        (
            "log.jsonl",
            '{"ts": 1, "tenant": "a", "format": "openai", "body": {}}\n{}\n',
            "log.jsonl:1: field 'format'",
        ),
        ("bare.jsonl", '{"model": "gpt-4o", "messages": []}\n', "bare.jsonl:1: a bare request body without"),
        ("bytes.bin", "\udcff", "bytes.bin: not UTF-8 text"),
    ],
)
def test_an_unreadable_input_is_named(tmp_path: Path, name: str, content: str, message: str) -> None:
    """In a subprocess, as a user runs it: one line on stderr naming the file (and line), no traceback."""
    (tmp_path / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptcache.cli",
            "report",
            str(tmp_path / name),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("promptcache report: ") and message in done.stderr
    assert done.stderr.count("\n") == 1


def test_demo_json_is_a_report_input(tmp_path: Path) -> None:
    """`promptcache demo --json` (the agent demo where installed, else the core one) feeds `report`."""
    demo = subprocess.run(
        [sys.executable, "-m", "promptcache.cli", "demo", "--json", "--provider", "openai"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    (tmp_path / "demo.json").write_text(demo.stdout)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptcache.cli",
            "report",
            str(tmp_path / "demo.json"),
            "--out",
            str(tmp_path / "r"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["sections"] and all("openai" in t for t in written["sections"])
    assert len(written["charts"]) >= 2 and Path(written["html"]).exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(inputs: dict[str, Path], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium); browser check skipped")
    written = write_report([inputs["hitrate"], inputs["trace"]], tmp_path / "r")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1280,1800",
                f"--screenshot={shot}",
                Path(written["html"]).resolve().as_uri(),
            ],
            capture_output=True,
            timeout=90,
            env={**os.environ, "HOME": profile},
        )
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    img = imread(shot)
    gray = np.asarray(img)[..., :3].mean(axis=2)
    assert gray.shape[0] >= 1000 and gray.shape[1] >= 1200
    # Not blank: real variance, and a good share of the page is not background.
    assert gray.var() > 0.005
    background = np.median(gray)
    assert (np.abs(gray - background) > 0.05).mean() > 0.05
    # The charts were painted: the promptcache blue (#1a73e8) covers a visible area.
    rgb = (np.asarray(img)[..., :3] * 255).astype(int)
    blue = (np.abs(rgb - np.array([0x1A, 0x73, 0xE8])).sum(axis=2) < 40).mean()
    assert blue > 0.003


def test_a_dollar_sign_in_a_name_is_drawn_as_written() -> None:
    # issue 19, item 8: a tenant named "$x^$" made matplotlib parse mathtext and crash the report
    from promptcache.lab.report import chart_bars, chart_grouped

    png = chart_bars({"$x^$": 0.5, "acme": 0.2}, "tenant $x^$", percent=True, ylabel="cached share")
    assert png.startswith(b"\x89PNG")
    png = chart_grouped({"$x^$": {"as sent": 0.1, "promptcache": 0.6}}, "t", percent=True, ylabel="y")
    assert png.startswith(b"\x89PNG")
