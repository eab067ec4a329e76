"""Randomized (tenant, scope, content) operations on a shared SQLite store: zero cross-tenant reads."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reliability import isolation

from . import _path  # noqa: F401


def test_no_cross_tenant_reads(tmp_path: Path) -> None:
    figs = isolation(tmp_path, True, None)
    s = figs["sqlite"]
    assert s["hits"] > 1000 and s.get("public_shared_hits", 0) > 0
    for k in (
        "cross_tenant_reads",
        "cross_scope_reads",
        "public_hit_without_allow_public",
        "public_hit_from_private_entry",
        "wrong_content",
    ):
        assert s.get(k, 0) == 0, k
    assert figs["prompt_and_langgraph_key_collisions_across_tenants"] == 0
