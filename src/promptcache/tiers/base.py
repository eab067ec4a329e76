"""The store protocol every tier implements, and the counters every tier keeps."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from promptcache.tiers.entry import Entry

__all__ = [
    "DEFAULT_TAG_RETENTION_S",
    "AsyncStore",
    "InvalidationFailed",
    "LocationUnusable",
    "StatsCounter",
    "Store",
    "TierError",
    "TierStats",
    "location_unusable",
]

DEFAULT_TAG_RETENTION_S = 86_400.0
"""How long a shared tier keeps the generation of a tag no entry uses after its last invalidation.

A value computed before an invalidation and written more than this later could be stored again
once the generation is gone: the retention bounds how late a write may land.
"""


class TierError(RuntimeError):
    """A tier could not do what was asked (unreachable, timed out, misconfigured)."""


class LocationUnusable(TierError):
    """The directory a file tier lives in cannot hold a cache (read-only, a file in the way, ``/proc``).

    Its message is written to be logged: the location, what is wrong with it and the fix. It names
    a directory of the operator's configuration, never anything of a request.
    """


def location_unusable(directory: object, exc: BaseException) -> LocationUnusable:
    """The :class:`LocationUnusable` for ``directory``, which failed with ``exc`` (an OS or SQLite error)."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return LocationUnusable(
        f"cache location {directory} is unusable ({type(exc).__name__}: {why}); calls run without "
        "this tier. Fix: point PROMPTCACHE_CACHE_DIR or store= at a writable directory"
    )


class InvalidationFailed(TierError):
    """The shared tier could not record an invalidation: tagged entries may still be served."""


class TierStats(BaseModel):
    """A snapshot of one tier's counters.

    ``corrupt`` counts entries that could not be read (truncated, foreign,
    old schema, failed integrity or decryption) and were treated as misses;
    ``stale`` counts entries refused because a tag generation moved on;
    ``tier_skipped`` counts calls that went past this tier because it raised,
    timed out or had its circuit open; ``dropped`` counts write-backs that
    were discarded (queue full or write failed); ``bytes`` is what the tier
    holds now where it knows (L1), ``bytes_read``/``bytes_written`` the traffic.
    """

    hits: int = 0
    misses: int = 0
    errors: int = 0
    tier_skipped: int = 0
    corrupt: int = 0
    stale: int = 0
    evictions: int = 0
    dropped: int = 0
    bytes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class StatsCounter:
    """Thread-safe mutable counters behind a :class:`TierStats` snapshot.

    Kept outside pydantic so that counting on the hot path costs a lock and an
    integer add, not a model ``__setattr__``.
    """

    __slots__ = ("_lock", "_values")

    def __init__(self, names: Iterable[str] | None = None) -> None:
        """Start every counter at zero (``names``: the counters, default :class:`TierStats`')."""
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(TierStats.model_fields if names is None else names, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._values[name] += n

    def add_unlocked(self, name: str, n: int = 1) -> None:
        """Add without taking the lock: only for owners that already serialize access."""
        self._values[name] += n

    def set(self, name: str, value: int) -> None:
        """Set a level-type counter such as ``bytes``."""
        with self._lock:
            self._values[name] = value

    def values(self) -> dict[str, int]:
        """A consistent copy of the counters, by name."""
        with self._lock:
            return dict(self._values)

    def snapshot(self) -> TierStats:
        """A consistent copy of the counters."""
        with self._lock:
            return TierStats(**self._values)


@runtime_checkable
class Store(Protocol):
    """A synchronous key → :class:`Entry` store with tag generations.

    Keys are opaque strings (SHA-256 hex from :mod:`promptcache.keys`), never
    parsed. ``get`` returns only entries that are whole, unexpired (past their
    stale window) and whose tags are all still at the generation recorded in
    the entry; everything else is a counted miss. Transport failures raise
    :class:`TierError` so that the router can skip the tier.
    """

    name: str

    def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or ``None``."""
        ...

    def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The live entries among ``keys`` (absent keys are left out), in one round trip."""
        ...

    def put(self, entry: Entry) -> None:
        """Store ``entry`` under ``entry.key``, replacing whatever was there."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    def tag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """The current generation of each tag (0 for a tag never invalidated)."""
        ...

    def invalidate_tag(self, tag: str) -> int:
        """Move ``tag`` to a new generation, making every entry written before unreadable."""
        ...

    def stats(self) -> TierStats:
        """A snapshot of this tier's counters."""
        ...

    def close(self) -> None:
        """Release connections/files; the store is unusable afterwards."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """The asyncio twin of :class:`Store` (same semantics, awaitable)."""

    name: str

    async def aget(self, key: str) -> Entry | None:
        """See :meth:`Store.get`."""
        ...

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """See :meth:`Store.get_many`."""
        ...

    async def aput(self, entry: Entry) -> None:
        """See :meth:`Store.put`."""
        ...

    async def adelete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        ...

    async def atag_generations(self, tags: Sequence[str]) -> dict[str, int]:
        """See :meth:`Store.tag_generations`."""
        ...

    async def ainvalidate_tag(self, tag: str) -> int:
        """See :meth:`Store.invalidate_tag`."""
        ...

    async def aclose(self) -> None:
        """See :meth:`Store.close`."""
        ...


def tags_current(entry: Entry, current: Mapping[str, int]) -> bool:
    """True if every tag of ``entry`` is still at the generation the entry recorded."""
    return all(current.get(tag, 0) == gen for tag, gen in entry.tags.items())
