"""A small version of the report's ``stale_after_invalidate`` section (``benchmarks/reliability_stale.py``).

Issue 19, items 4 and 5: under concurrency (threads and asyncio), across processes, after a
reset store and with two policies on one store, no read that started after ``invalidate()``
returned gets an older value, and no policy is served another's entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import reliability_stale as rs

from . import _path  # noqa: F401


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_no_stale_read_under_concurrency(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location = str(tmp_path / "c") if kind == "sqlite" else request.getfixturevalue("redis_server").url
    out = rs._concurrent(kind, location, 60)
    for mode in ("threads", "asyncio"):
        assert out[mode]["stale_reads"] == 0, out
        assert out[mode]["reads"] > 0 and out[mode]["computed"] > 1  # invalidations forced recomputes


@pytest.mark.redis
def test_flushdb_and_two_policies(redis_server: Any, tmp_path: Path) -> None:
    flushed = rs._flushdb(redis_server.url, 2)
    assert flushed["stale_served_invalidating_process"] == 0
    assert flushed["stale_served_other_process_after_bus_delivery"] == 0
    assert flushed["epoch_changes_seen"] >= 2
    two = rs._two_policies("sqlite", lambda: str(tmp_path / "p"), 5)
    assert two["served_to_strict"] == 0 and two["policy_mismatch_misses"] == 5
