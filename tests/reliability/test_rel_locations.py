"""Unusable cache locations, all of them, every way a user names one: calls succeed, one warning.

The read-only cases run on a real read-only tmpfs in a private mount namespace (``unshare``);
they are skipped, saying so, where the kernel does not allow one. ``chmod`` is not used: root
ignores it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability_locations import in_read_only_mount, run_cases

from . import _path  # noqa: F401


@pytest.mark.parametrize("existing_cache", [False, True], ids=["empty", "with_cache"])
@pytest.mark.parametrize("via", ["store", "env", "langchain_retriever"])
def test_a_read_only_mount_degrades(via: str, existing_cache: bool) -> None:
    res = in_read_only_mount(via, existing_cache)
    if res is None:
        pytest.skip("no private mount namespace here (unshare): a read-only tmpfs cannot be mounted")
    assert res["raised"] is None, res
    assert res["wrong_values"] == 0 and res.get("retrieval_wrong", 0) == 0
    assert res.get("stale_after_write", 0) == 0
    assert res["tier_skipped"] >= 1
    assert res["tier_warnings"] == 1 and res["other_warnings"] == res.get("writes", 0)


def test_every_location_case_degrades(tmp_path: Path) -> None:
    cases = run_cases(tmp_path, read_only_mounts=False)  # those run above, one by one
    assert len(cases) >= 13
    failed = [c for c in cases if c["ok"] is False]
    assert not failed, [(c["name"], c["via"], c["outcome"]) for c in failed]
