"""The SQLite tier recovers when its file is deleted or truncated under a running process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promptcache.tiers import sqlite as sqlite_mod
from promptcache.tiers.base import TierError
from promptcache.tiers.entry import Entry
from promptcache.tiers.sqlite import SQLiteStore


def _entry(key: str) -> Entry:
    now = time.time()
    return Entry(
        key=key, entry_type="t", tenant="acme", created_at=now, expires_at=now + 600,
        payload=b"x" * 64, size=64, content_hash="0" * 64,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _check_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # The file check normally runs at most once a second; every call here.
    monkeypatch.setattr(sqlite_mod, "_REOPEN_CHECK_S", 0.0)


def test_deleted_file_is_recreated_and_used(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = SQLiteStore(path)
    store.put(_entry("a"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert store.get("a") is None  # a new, empty cache file
    store.put(_entry("b"))
    assert path.exists() and store.get("b") is not None
    # another store on the same path (another process) sees what was written after the fault
    assert SQLiteStore(path).get("b") is not None
    store.close()


def test_truncated_file_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = SQLiteStore(path)
    for i in range(50):
        store.put(_entry(f"k{i}"))
    store.close()
    with path.open("r+b") as f:
        f.truncate(1024)
    Path(f"{path}-wal").unlink(missing_ok=True)
    recovered = False
    for _ in range(3):  # the first statement may fail and set the file aside
        try:
            s = SQLiteStore(path)
            s.put(_entry("fresh"))
            recovered = s.get("fresh") is not None
            s.close()
            break
        except TierError:
            continue
    assert recovered
    assert any(p.name.startswith("c.sqlite3.corrupt-") for p in tmp_path.iterdir())
