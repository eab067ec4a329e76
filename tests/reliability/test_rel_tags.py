"""The ``tags`` section's figures, on a real SQLite file and a real redis-server (issue 19, items 2, 3, 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis_fixtures import RedisServer

from benchmarks.reliability_tags import cross_tenant, memory_at, orphans_after_purge, pii_in_stores

from . import _path  # noqa: F401


@pytest.mark.redis
def test_no_pii_tag_value_in_clear(tmp_path: Path, redis_server: RedisServer) -> None:
    figs = pii_in_stores(tmp_path, redis_server.url)
    assert figs["tag_values"] >= 600
    assert figs["sqlite_in_clear"] == 0 and figs["redis_in_clear"] == 0


def test_no_orphan_after_purge_sqlite(tmp_path: Path) -> None:
    figs = orphans_after_purge(tmp_path, None)
    assert figs["sqlite_orphan_tag_rows"] == 0 and figs["sqlite_orphan_generations"] == 0


@pytest.mark.redis
def test_no_cross_tenant_invalidation(tmp_path: Path, redis_server: RedisServer) -> None:
    figs = cross_tenant(tmp_path, redis_server.url, quick=True)
    for store in ("sqlite", "redis"):
        assert figs[store]["writes"] >= 5
        assert figs[store]["cross_tenant_invalidations"] == 0
        assert figs[store]["own_entries_not_invalidated"] == 0


def test_generation_table_stays_within_its_bound_at_100k_tags() -> None:
    figs = memory_at(100_000)
    assert figs["table"] == figs["bound"] < 100_000
