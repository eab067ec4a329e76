"""The tiered stores: L1 memory, L2 SQLite or Redis, L3 blobs, and the chain over them.

Below L1 the chain is composed of store wrappers (see :func:`below_l1`):
:class:`WriteBack`, :class:`Sealed`, :class:`BlobOffload` and :class:`CircuitBreaker`.
Above the router, ``get_or_compute`` is a chain of read-through wrappers (see
:func:`read_through`): :class:`StaleWhileRevalidate` → :class:`SingleFlight` → router.

>>> store = TieredStore()          # L1 only; TieredStore.default() adds the embedded SQLite L2
>>> _ = store.put("k" * 64, b"v", tenant="t1", entry_type="metadata", tags=["policy:v12"])
>>> store.get("k" * 64, tenant="t1").payload
b'v'
>>> _ = store.invalidate("policy:v12")
>>> store.get("k" * 64, tenant="t1") is None
True
"""

from promptcache.tiers.base import AsyncStore, LocationUnusable, Store, TierError, TierStats
from promptcache.tiers.blob import BlobStore, FileBlobStore, FsspecBlobStore, open_blob_store
from promptcache.tiers.breaker import CircuitBreaker, TierSkipped
from promptcache.tiers.crypto import KeyRing
from promptcache.tiers.entry import SCHEMA_VERSION, Entry, EntryType, decode_entry, encode_entry
from promptcache.tiers.memory import MemoryStore
from promptcache.tiers.offload import BlobOffload
from promptcache.tiers.outcome import Outcome, Produced
from promptcache.tiers.readthrough import ReadThrough
from promptcache.tiers.router import (
    InvalidationFailed,
    Lookup,
    Result,
    RouterStats,
    TieredStore,
    below_l1,
    read_through,
)
from promptcache.tiers.sealed import Sealed
from promptcache.tiers.singleflight import SingleFlight
from promptcache.tiers.sqlite import SQLiteStore, default_cache_dir
from promptcache.tiers.swr import StaleWhileRevalidate
from promptcache.tiers.writeback import WriteBack

__all__ = [
    "SCHEMA_VERSION",
    "AsyncStore",
    "BlobOffload",
    "BlobStore",
    "CircuitBreaker",
    "Entry",
    "EntryType",
    "FileBlobStore",
    "FsspecBlobStore",
    "InvalidationFailed",
    "KeyRing",
    "LocationUnusable",
    "Lookup",
    "MemoryStore",
    "Outcome",
    "Produced",
    "ReadThrough",
    "Result",
    "RouterStats",
    "SQLiteStore",
    "Sealed",
    "SingleFlight",
    "StaleWhileRevalidate",
    "Store",
    "TierError",
    "TierSkipped",
    "TierStats",
    "TieredStore",
    "WriteBack",
    "below_l1",
    "decode_entry",
    "default_cache_dir",
    "encode_entry",
    "open_blob_store",
    "read_through",
]
