"""Cross-process invalidation of a tool output and a retrieval result, with real OS processes.

Several spawned workers cache the same tool output and retrieval result from a
shared L2 (a real SQLite file, or a real redis-server), the parent changes the
system of record with a *write tool* (whose declared tag invalidates the tool
output) and invalidates the index tag with the ``promptcache invalidate``
command run as a separate process. Every worker must serve the fresh answers:
with Redis through pub/sub, far within a bound (60 s) that would otherwise
let them serve stale; with SQLite, within its staleness bound. A worker that
never cached anything must get the fresh answer on its first read.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import RedisServer

from promptcache.artifacts import ToolOutputCache, ToolSpec, open_store

from . import _procs

UPDATE = ToolSpec(
    name="update_reservation", side_effect="idempotent_write", invalidates=["reservation:{rid}"]
)


def truth(version: int) -> dict[str, Any]:
    return {
        "reservation": {"A": {"rid": "A", "version": version}},
        "docs": [{"id": "d1", "text": "refunds take 5 days", "metadata": {"version": version}}],
    }


def run_fleet(kind: str, location: str, tmp_path: Path, max_staleness: float) -> list[tuple[Any, ...]]:
    truth_path = str(tmp_path / "truth.json")
    _procs.write_truth(truth_path, truth(1))
    ctx = mp.get_context("spawn")
    children = []
    for warm in (True, True, False):
        q_out, q_in = ctx.Queue(), ctx.Queue()
        p = ctx.Process(
            target=_procs.artifact_watcher,
            args=(kind, location, truth_path, q_out, q_in, max_staleness, warm),
        )
        p.start()
        children.append((p, q_out, q_in, warm))
    parent = open_store(location)
    try:
        for _, q_out, _, warm in children:
            ready = q_out.get(timeout=60)
            if warm:  # each warm worker now serves both artifacts from its own L1
                assert ready == ("ready", "l1", "l1")
        tools = ToolOutputCache(parent)
        # the write: changes the system of record, then invalidates reservation:A (tool output)
        out = tools.call(
            UPDATE, {"rid": "A"}, lambda rid: _procs.write_truth(truth_path, truth(2)), tenant="acme"
        )
        assert out.lookup.invalidated == ("reservation:A",) and not out.lookup.invalidation_failed
        # the reindex: invalidated from another process, with the CLI
        env = {**os.environ, "PROMPTCACHE_STORE": location}
        cli = subprocess.run(
            [sys.executable, "-m", "promptcache.cli", "invalidate", "--tag", "index:kb@7"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        for _, _, q_in, _ in children:
            q_in.put(2)
        return [q_out.get(timeout=60) for _, q_out, _, _ in children]
    finally:
        parent.close()
        for p, *_ in children:
            p.join(15)
            if p.is_alive():
                p.kill()


@pytest.mark.redis
def test_redis_fleet_drops_stale_artifacts_via_pubsub(redis_server: RedisServer, tmp_path: Path) -> None:
    # a 60 s bound: only the bus (and L2 generations) can make the workers fresh in time
    results = run_fleet("redis", redis_server.url, tmp_path, max_staleness=60.0)
    for kind, tool_s, docs_s, stale_after, _ in results:
        assert kind == "done" and 0 <= tool_s < 2.0 and 0 <= docs_s < 2.0, results
        assert stale_after == 0
    assert results[2][4], "the worker that never cached read a stale artifact from L2"


def test_sqlite_fleet_honours_the_staleness_bound(tmp_path: Path) -> None:
    results = run_fleet("sqlite", str(tmp_path / "cache"), tmp_path, max_staleness=0.3)
    for kind, tool_s, docs_s, stale_after, _ in results:
        assert kind == "done" and tool_s >= 0 and docs_s >= 0, results
        assert stale_after == 0, "a worker served a stale artifact after the staleness bound"
    assert results[2][4], "the worker that never cached read a stale artifact from L2"
