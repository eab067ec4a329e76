"""``promptcache stats``: figures published by other processes into a SQLite store, read back by the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from promptcache import telemetry
from promptcache.artifacts import ToolSpec
from promptcache.cli import main
from promptcache.engine import PromptCache
from promptcache.pseudonym import tenant_label
from promptcache.telemetry.aggregate import StatsAggregator, publish, read_stats
from promptcache.usage import CacheUsage

WRITER = textwrap.dedent(
    """
    import sys
    from promptcache import telemetry
    from promptcache.artifacts import ToolSpec
    from promptcache.engine import PromptCache
    from promptcache.usage import CacheUsage

    store_dir, tenant = sys.argv[1], sys.argv[2]
    agg = telemetry.add_observer(telemetry.StatsAggregator())
    cache = telemetry.instrument(PromptCache(store=store_dir))
    body = lambda clock: {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You help.\\nCurrent time: 2024-05-15 " + clock},
        {"role": "user", "content": "hi"}]}
    with telemetry.labels(agent="support"):
        for clock in ("10:00", "10:01", "10:02", "10:03"):
            cache.prepare_request(body(clock), format="openai-chat", tenant=tenant)
            cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=2000,
                                          cache_read_tokens=1024, output_tokens=10), tenant=tenant)
        spec = ToolSpec(name="lookup", side_effect="read_only")
        for _ in range(3):
            cache.tools.call(spec, {"q": 1}, lambda q: "x", tenant=tenant)
    telemetry.publish(agg, cache.store)
    cache.close()
    """
)


def _write(store: Path, tenant: str) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(store), tenant], check=True, timeout=60)


def test_figures_from_two_processes_are_read_by_a_third(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "acme")
    _write(tmp_path, "globex")
    assert main(["stats", "--store", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["writers"] == 2
    rows = {(r["tenant"], r["entry_type"]): r for r in out["rows"]}
    acme, globex = tenant_label("acme"), tenant_label("globex")  # written as keyed hashes
    assert set(rows) == {
        (acme, "prompt_prefix"),
        (acme, "tool_output"),
        (globex, "prompt_prefix"),
        (globex, "tool_output"),
    }
    p = rows[(acme, "prompt_prefix")]
    assert p["model"] == "gpt-4o" and p["agent"] == "support"
    assert (p["calls"], p["input_tokens"], p["cache_read_tokens"]) == (4, 8000, 4096)
    assert p["cached_share"] == pytest.approx(0.512)
    assert p["cost_avoided_usd"] > 0
    # First request, then the clock changes once (learned), then the prefix holds.
    reasons = dict(p["top_miss_reasons"])
    assert reasons["first_request"] == 1
    assert p["hits"] >= 1 and p["hits"] + p["misses"] == 4
    t = rows[(acme, "tool_output")]
    assert (t["calls"], t["hits"], t["misses"], t["hit_rate"]) == (3, 2, 1, pytest.approx(0.6667, abs=1e-3))
    assert t["top_miss_reasons"][0][0] == "stored"  # a LookupReason value

    assert main(["stats", "--store", str(tmp_path), "--by", "entry_type", "--json"]) == 0
    by_type = {r["entry_type"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert by_type["tool_output"]["calls"] == 6 and by_type["prompt_prefix"]["input_tokens"] == 16000


def test_rich_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    agg = StatsAggregator("w1")
    telemetry.add_observer(agg)
    try:
        cache = telemetry.instrument(PromptCache(store=str(tmp_path)))
        cache.record_usage(
            CacheUsage(provider="openai", model="gpt-4o", input_tokens=100, cache_read_tokens=50), tenant="t1"
        )
        cache.tools.call(ToolSpec(name="write_it"), {"a": 1}, lambda a: 1, tenant="t1")
        publish(agg, cache.store)
        cache.close()
    finally:
        telemetry.remove_observer(agg)
    monkeypatch.setenv("PROMPTCACHE_STORE", str(tmp_path))
    assert main(["stats"]) == 0
    text = capsys.readouterr().out
    assert "promptcache stats (1 writer)" in text and "50.0%" in text
    assert "side_effect" in text  # the denial reason (rich may wrap it)


def test_republishing_replaces_a_writer_record(tmp_path: Path) -> None:
    from promptcache.artifacts.store import open_store

    store = open_store(str(tmp_path))
    agg = StatsAggregator("w")
    for n in (1, 2):
        agg.on_event(
            telemetry.UsageEvent("t", "openai", "gpt-4o", 10, 0, 0, 1, 0.0, 0.0, True)  # one more call
        )
        publish(agg, store)
        (rec,) = read_stats(store)
        assert rec.rows[0].usage_calls == n
    store.close()


def test_empty_store_and_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--store", str(tmp_path)]) == 1
    assert main(["stats", "--store", str(tmp_path), "--by", "colour"]) == 2
    assert main(["stats", "--store", "gopher://x"]) == 2
    capsys.readouterr()


PLAIN_APP = textwrap.dedent(
    """
    import sys
    from promptcache import PromptCache
    from promptcache.usage import CacheUsage

    cache = PromptCache(store=sys.argv[1])  # nothing else: no telemetry, no publish
    for _ in range(3):
        cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=2000,
                                      cache_read_tokens=1024, output_tokens=10), tenant="acme")
    if sys.argv[2] == "close":
        cache.close()
    """
)


def _stats_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptcache.cli", "stats", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("ending", ["close", "exit"])
def test_a_plain_cache_records_into_its_store(tmp_path: Path, ending: str) -> None:
    """Usage recorded by a plain PromptCache shows in `promptcache stats`, whether closed or just exited."""
    subprocess.run([sys.executable, "-c", PLAIN_APP, str(tmp_path), ending], check=True, timeout=120)
    done = _stats_cli("--store", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["rows"]
    assert (row["tenant"], row["model"], row["calls"]) == (tenant_label("acme"), "gpt-4o", 3)
    assert (row["input_tokens"], row["cache_read_tokens"], row["hit_rate"]) == (6000, 3072, None)
    assert row["cost_usd"] > 0 and row["cost_avoided_usd"] > 0
    text = _stats_cli("--store", str(tmp_path))
    # the table names the tenant by its keyed hash, never in clear
    assert text.returncode == 0 and "acme" not in text.stdout and "t_" in text.stdout


def test_recording_can_be_switched_off(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PROMPTCACHE_RECORD_STATS": "0"}
    subprocess.run(
        [sys.executable, "-c", PLAIN_APP, str(tmp_path), "close"], check=True, timeout=120, env=env
    )
    done = _stats_cli("--store", str(tmp_path))
    assert done.returncode == 1 and "no figures" in done.stderr
    cache = PromptCache(store=str(tmp_path / "off"), record_stats=False)
    cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=10), tenant="t")
    cache.close()
    assert not (tmp_path / "off").exists()  # not even opened


def test_a_store_fault_never_fails_the_app(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = PromptCache(store=str(blocker / "store"))  # can never be created
    cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=10), tenant="t")
    cache.close()  # the write fails inside; the app sees nothing
    assert cache.stats().total.calls == 1


def test_stats_on_a_missing_store_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for spec in (str(missing), f"sqlite://{missing}"):
        done = _stats_cli("--store", spec)
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"promptcache stats: no store at {missing} (--store); "
            "pass the directory your app's PromptCache(store=...) uses"
        )
        assert "Traceback" not in done.stderr and not missing.exists()


def test_an_instrumented_cache_is_not_counted_twice(tmp_path: Path) -> None:
    """Its own record and the telemetry record carry the same usage: the reader keeps one."""
    agg = telemetry.add_observer(StatsAggregator())
    try:
        cache = telemetry.instrument(PromptCache(store=str(tmp_path)))
        cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=100), tenant="t")
        publish(agg, cache.store)
        cache.close()
    finally:
        telemetry.remove_observer(agg)
    done = _stats_cli("--store", str(tmp_path), "--json")
    out = json.loads(done.stdout)
    assert out["writers"] == 1 and sum(r["input_tokens"] for r in out["rows"]) == 100


def test_figures_reach_the_store_while_the_app_runs(tmp_path: Path) -> None:
    """The background write: no close(), no exit, the figures are in the store within the interval."""
    import time

    from promptcache.artifacts.store import open_store
    from promptcache.stats import StatsPersister, recorder_for
    from promptcache.tiers.base import TierError

    cache = PromptCache(store=str(tmp_path), record_stats=False)
    StatsPersister(cache, recorder_for(cache), interval_s=0.05)
    cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=700), tenant="t")
    deadline = time.monotonic() + 10
    rows: list[Any] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.1)
        try:  # the writer may hold SQLite's lock at this very moment: look again
            reader = open_store(str(tmp_path))
        except TierError:
            continue
        try:
            rows = [row for rec in read_stats(reader) for row in rec.rows]
        except TierError:
            continue
        finally:
            reader.close()
    assert [(r.tenant, r.usage_calls, r.input_tokens) for r in rows] == [(tenant_label("t"), 1, 700)]
    cache.close()


FORKING_APP = textwrap.dedent(
    """
    import os, sys
    from promptcache import PromptCache
    from promptcache.usage import CacheUsage

    cache = PromptCache(store=sys.argv[1])
    usage = CacheUsage(provider="openai", model="gpt-4o", input_tokens=100)
    pid = os.fork()
    cache.record_usage(usage, tenant="child" if pid == 0 else "parent")
    cache.close()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_worker_is_its_own_writer(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", FORKING_APP, str(tmp_path)], check=True, timeout=120)
    done = _stats_cli("--store", str(tmp_path), "--json", "--by", "tenant")
    out = json.loads(done.stdout)
    assert out["writers"] == 2
    assert {r["tenant"]: r["calls"] for r in out["rows"]} == {
        tenant_label("child"): 1,
        tenant_label("parent"): 1,
    }
