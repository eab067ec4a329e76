"""Each store wrapper on its own, over real SQLite files and blob directories."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promptcache.tiers import Entry, FileBlobStore, KeyRing, SQLiteStore
from promptcache.tiers.base import StatsCounter
from promptcache.tiers.breaker import CircuitBreaker, TierSkipped
from promptcache.tiers.offload import BlobOffload
from promptcache.tiers.router import below_l1
from promptcache.tiers.sealed import Sealed
from promptcache.tiers.writeback import WriteBack

from .conftest import key_for


def _entry(name: str, payload: bytes) -> Entry:
    return Entry.new(key_for("t", name), payload, tenant="t", entry_type="m", created_at=0.0, ttl_s=None)


def test_breaker_skips_a_failing_tier_and_stays_open(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    l2.close()  # every call now raises
    counters = StatsCounter()
    guarded = CircuitBreaker(l2, name="l2", counters=counters, cooldown_s=60)
    with pytest.raises(TierSkipped):
        guarded.get(key_for("t", "a"))
    with pytest.raises(TierSkipped):  # open: skipped without asking the tier
        asyncio.run(guarded.aget(key_for("t", "a")))
    assert counters.snapshot().tier_skipped == 2


def test_sealed_encrypts_below_and_counts_what_fails_its_check(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    counters = StatsCounter()
    sealed = Sealed(l2, keyring=KeyRing({"k1": KeyRing.generate_key()}, "k1"), counters=counters)
    entry = _entry("s", b"plain text")
    sealed.put(entry)
    raw = l2.get(entry.key)
    assert raw is not None and raw.key_id == "k1" and raw.payload != b"plain text"
    opened = sealed.get(entry.key)
    assert opened is not None and opened.payload == b"plain text"
    assert raw.payload is not None
    flipped = raw.payload[:-1] + bytes([raw.payload[-1] ^ 1])
    l2.put(raw.model_copy(update={"payload": flipped}))  # the ciphertext no longer authenticates
    assert sealed.get(entry.key) is None and counters.snapshot().corrupt == 1
    l2.close()


def test_offload_moves_large_payloads_to_l3_and_names_them(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    blobs = CircuitBreaker(FileBlobStore(tmp_path / "blobs"), name="l3", counters=StatsCounter())
    offload = BlobOffload(l2, blobs=blobs, threshold=100)
    big, small = _entry("b", b"B" * 500), _entry("s", b"s")
    offload.put(big)
    offload.put(small)
    raw = l2.get(big.key)
    assert raw is not None and raw.payload is None and raw.blob is not None
    got = offload.get(big.key)
    assert got is not None and got.payload == b"B" * 500 and got.blob is not None  # read from L3
    got_small = offload.get(small.key)
    assert got_small is not None and got_small.blob is None
    assert BlobOffload(l2, blobs=None, threshold=100).get(big.key) is None  # no L3: a miss
    l2.close()


def test_write_back_returns_at_once_and_writes_in_the_background(tmp_path: Path) -> None:
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    counted: list[str] = []
    wb = WriteBack(l2, count=counted.append, tier_counters=StatsCounter())
    entry = _entry("w", b"v")
    wb.put(entry)
    assert wb.flush()
    assert l2.get(entry.key) is not None and counted == ["writeback_queued"]
    wb.stop()
    l2.close()


def test_the_chain_below_l1_is_composed_in_one_order(tmp_path: Path) -> None:
    counters = {"l1": StatsCounter(), "l2": StatsCounter(), "l3": StatsCounter()}
    l2 = SQLiteStore(tmp_path / "c.sqlite3")
    chain = below_l1(l2, FileBlobStore(tmp_path / "blobs"), counters=counters, count=lambda _: None)
    layers = [type(chain).__name__]
    inner = chain.inner
    while hasattr(inner, "inner"):
        layers.append(type(inner).__name__)
        inner = inner.inner
    assert layers == ["WriteBack", "Sealed", "BlobOffload", "CircuitBreaker"] and inner is l2
    chain.stop()
    l2.close()
