"""L2 SQLite on real files: entries, expiry, tags, unreadable rows, several processes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from promptcache.tiers import Entry, SQLiteStore, TieredStore, default_cache_dir

from . import _procs
from .conftest import FakeClock, key_for


def _e(key: str, payload: bytes = b"v", *, now: float, ttl: float | None = None, **tags: int) -> Entry:
    return Entry.new(key, payload, tenant="t", entry_type="m", created_at=now, ttl_s=ttl, tags=tags)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "c.sqlite3", clock=clock)
    yield s  # type: ignore[misc]
    s.close()


def test_wal_mode_and_round_trip(store: SQLiteStore, clock: FakeClock) -> None:
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    e = _e("a" * 64, b"\x00\x01" * 500, now=clock())
    store.put(e)
    assert store.get("a" * 64) == e
    assert store.get_many(["a" * 64, "b" * 64]) == {"a" * 64: e}
    store.delete("a" * 64)
    assert store.get("a" * 64) is None
    s = store.stats()
    assert s.hits == 2 and s.misses == 2


def test_expiry_and_purge(store: SQLiteStore, clock: FakeClock) -> None:
    store.put(_e("a" * 64, now=clock(), ttl=5))
    store.put(_e("b" * 64, now=clock()))
    clock.advance(5)
    assert store.get("a" * 64) is None and store.get("b" * 64) is not None
    assert store.purge_expired() == 1
    rows = sqlite3.connect(store.path).execute("SELECT count(*) FROM pc_entries").fetchone()[0]
    assert rows == 1


def test_tag_invalidation_and_index(store: SQLiteStore, clock: FakeClock) -> None:
    store.put(_e("a" * 64, now=clock(), **{"reservation:ABC123": 0}))
    store.put(_e("b" * 64, now=clock(), **{"reservation:XYZ": 0}))
    assert store.tag_generations(["reservation:ABC123"]) == {"reservation:ABC123": 0}
    assert store.invalidate_tag("reservation:ABC123") == 1
    assert store.get("a" * 64) is None and store.get("b" * 64) is not None
    assert store.tag_generations(["reservation:ABC123"]) == {"reservation:ABC123": 1}
    # an entry written with the old generation after the bump is refused as stale
    store.put(_e("c" * 64, now=clock(), **{"reservation:ABC123": 0}))
    assert store.get("c" * 64) is None and store.stats().stale == 1
    store.put(_e("c" * 64, now=clock(), **{"reservation:ABC123": 1}))
    assert store.get("c" * 64) is not None


@pytest.mark.parametrize(
    "raw",
    [b"garbage", b"PCE\x01\x00\x00\x00\x05{", b"PCE\x00" + b"\x00" * 20, b""],
    ids=["garbage", "truncated", "old-schema", "empty"],
)
def test_unreadable_rows_are_counted_misses(store: SQLiteStore, clock: FakeClock, raw: bytes) -> None:
    store.put_raw("a" * 64, raw)
    assert store.get("a" * 64) is None
    assert store.stats().corrupt == 1


def test_row_under_another_key_is_corrupt(store: SQLiteStore, clock: FakeClock) -> None:
    from promptcache.tiers import encode_entry

    store.put_raw("b" * 64, encode_entry(_e("a" * 64, now=clock())))
    assert store.get("b" * 64) is None and store.stats().corrupt == 1


def test_a_damaged_database_file_is_set_aside_and_the_store_opens(tmp_path: Path, clock: FakeClock) -> None:
    # Opening never raises (an unusable cache must not fail the cache's construction, issue 19
    # item 6): the damaged file is set aside, counted, and the next call starts a new one.
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = SQLiteStore(path, clock=clock)
    assert store.stats().corrupt == 1
    assert any(p.name.startswith("c.sqlite3.corrupt-") for p in tmp_path.iterdir())
    store.put(_e("a" * 64, now=clock()))
    assert store.get("a" * 64) is not None
    store.close()


def test_router_skips_a_tier_that_breaks_mid_use(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    l2 = SQLiteStore(path)
    store = TieredStore(l2=l2)
    k = key_for("t", "x")
    store.put(k, b"v", tenant="t", entry_type="m")
    assert store.flush()
    l2.close()  # every later call raises
    store.l1.clear()
    assert store.get(k, tenant="t") is None
    assert store.stats().tiers["l2"].tier_skipped >= 1
    store.close()


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTCACHE_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    s = SQLiteStore()
    assert s.path == tmp_path / "here" / "promptcache.sqlite3" and s.path.exists()
    s.close()
    monkeypatch.delenv("PROMPTCACHE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "promptcache"


def test_several_processes_write_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    SQLiteStore(path).close()
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        counts = pool.starmap(_procs.sqlite_writer, [(path, w, 150, "tool:s:v1") for w in range(4)])
    assert counts == [150] * 4
    store = SQLiteStore(path)
    keys = [f"{w:02d}{i:062d}" for w in range(4) for i in range(150)]
    got = store.get_many(keys)
    assert len(got) == 600
    assert got[keys[-1]].payload == b"w3-149"
    assert store.invalidate_tag("tool:s:v1") == 1
    assert store.get_many(keys) == {}
    store.close()
