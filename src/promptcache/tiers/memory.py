"""L1: the in-process tier (bounded LRU, TTL-aware, thread-safe, O(1) get/put)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from promptcache.invalidation import GenerationCache
from promptcache.tiers.base import StatsCounter, TierStats
from promptcache.tiers.entry import Entry

__all__ = ["MemoryStore"]


class MemoryStore:
    """An LRU of :class:`Entry` bounded by entry count and by bytes.

    Tag checks use a :class:`GenerationCache` (shared with the router): an
    entry whose recorded generation for a tag is below the known generation
    is refused and dropped on the spot, so invalidation costs nothing here
    until the entry is touched. Each record keeps the clock time it was
    stored, which the router uses to bound staleness when no bus vouches for L1.
    """

    name = "l1"

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        generations: GenerationCache | None = None,
    ) -> None:
        """Create an empty L1 holding at most ``max_entries`` entries and ``max_bytes`` bytes."""
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self.generations = generations if generations is not None else GenerationCache(clock)
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[Entry, int, float]] = OrderedDict()
        self._bytes = 0
        self._stats = StatsCounter()

    def __len__(self) -> int:
        """Number of entries held."""
        return len(self._data)

    def get_record(self, key: str) -> tuple[Entry, float] | None:
        """The live entry under ``key`` and when it was stored, or ``None`` (counted)."""
        now = self._clock()
        gens = self.generations
        with self._lock:
            rec = self._data.get(key)
            stats = self._stats
            if rec is None:
                stats.add_unlocked("misses")
                return None
            entry = rec[0]
            if entry.dead_at(now):
                self._drop_locked(key, rec)
                stats.add_unlocked("misses")
                return None
            for t, g in entry.tags.items():
                if g < gens.known(t):
                    self._drop_locked(key, rec)
                    stats.add_unlocked("stale")
                    stats.add_unlocked("misses")
                    return None
            self._data.move_to_end(key)
            stats.add_unlocked("hits")
            return entry, rec[2]

    def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None``."""
        rec = self.get_record(key)
        return None if rec is None else rec[0]

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The live entries among ``keys``."""
        out: dict[str, Entry] = {}
        for k in keys:
            e = self.get(k)
            if e is not None:
                out[k] = e
        return out

    def put(self, entry: Entry, *, stored_at: float | None = None) -> None:
        """Store ``entry`` (plaintext expected), evicting least recently used entries to fit."""
        size = entry.footprint()
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        when = self._clock() if stored_at is None else stored_at
        with self._lock:
            old = self._data.pop(entry.key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[entry.key] = (entry, size, when)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._data) > self.max_entries:
                _, (_, osize, _) = self._data.popitem(last=False)
                self._bytes -= osize
                self._stats.add_unlocked("evictions")
            self._stats.add_unlocked("bytes_written", entry.size)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._lock:
            rec = self._data.get(key)
            if rec is not None:
                self._drop_locked(key, rec)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def tag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """The generations this process knows of."""
        return {t: self.generations.known(t) for t in tags}

    def invalidate_tag(self, tag: str) -> int:
        """Invalidate ``tag`` in this process only (L1 used on its own)."""
        return self.generations.bump_local(tag)

    def stats(self) -> TierStats:
        """Counters, with ``bytes`` the current footprint."""
        self._stats.set("bytes", self._bytes)
        return self._stats.snapshot()

    def close(self) -> None:
        """Drop every entry."""
        self.clear()

    def _drop_locked(self, key: str, rec: tuple[Entry, int, float]) -> None:
        del self._data[key]
        self._bytes -= rec[1]
